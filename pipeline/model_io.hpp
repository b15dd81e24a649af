// Loading a trained model from any file augflow reads, and writing it for other programs.
//
// A model file is either an augflow checkpoint (.ckpt) or an ONNX file (.onnx). Both load into a
// model::Checkpoint (spec, input shape, classes and names, the training augmentation spec that
// sets the test-time views, parameters and batch-norm state), so eval, predict and train --init
// treat them alike. ONNX files written by augflow carry that information in their metadata; for
// other ONNX files (a torchvision ResNet, say) the classes are numbered "0".."K-1" and the
// preprocessing is ImageNet's: shorter side 256, centre 224 crop (for another input size S: the
// shorter side to S x 256/224, centre S crop), RGB planes normalised by ImageNet's mean and std,
// which is how torchvision's models are fed.
//
// API: public, part of augflow::pipeline; installed as <augflow/pipeline/model_io.hpp>.
#pragma once

#include <map>
#include <string>

#include "augflow/model/checkpoint.hpp"
#include "augflow/model/config.hpp"

namespace augflow::model {
class Net;
}

namespace augflow::pipeline {

/// The training spec assumed for ONNX files without augflow's metadata, for an input of
/// `size` pixels: its test-time views are ImageNet's standard evaluation ("center_crop(256,224)
/// | normalize(imagenet)" for 224).
std::string imagenet_augmentation(int size);

/// Loads `path` by its extension: .onnx through the ONNX reader, anything else as a checkpoint.
/// Throws IoError when the file cannot be read, DataError (naming the file) when it is not a
/// model augflow can represent.
model::Checkpoint load_model(const std::string& path);

/// Writes `checkpoint` as an ONNX file at `path` (atomically), with the metadata that lets
/// load_model and other programs use it alone: class names, input shape, channel order, the
/// normalisation (mean and std of values in [0,1]), the model and training specs and augflow's
/// version. Returns the metadata added to the model's own (normalize_mean, normalize_std as
/// JSON arrays, channel_order, ...). Throws IoError when the file cannot be written.
std::map<std::string, std::string> export_model(const model::Checkpoint& checkpoint, const std::string& path);

/// The model spec for fine-tuning `init` on data with `classes` classes: the file's own spec,
/// with the last layer (the fc head) resized to `classes` when the file has another number.
/// `head_replaced` tells which. Throws DataError naming the file when its last layer is not an fc.
model::ModelSpec fine_tuning_spec(const model::Checkpoint& init, const std::string& path, int classes,
                                  bool& head_replaced);

/// Copies `init`'s weights and batch-norm statistics into `net` (built from fine_tuning_spec or
/// a spec with the same layers), leaving the last layer's as `net` has them (freshly
/// initialised) when `keep_head` is false. Everything is checked before anything is copied: a
/// missing or differently shaped tensor is a ShapeError naming the tensor and the file.
void load_initial_weights(model::Net& net, const model::Checkpoint& init, const std::string& path, bool keep_head);

}  // namespace augflow::pipeline
