// Loading a trained model from any file augflow reads, and writing it for other programs.
//
// A model file is either an augflow checkpoint (.ckpt) or an ONNX file (.onnx). Both load into a
// model::Checkpoint (spec, input shape, classes and names, the training augmentation spec that
// sets the test-time views, parameters and batch-norm state), so eval, predict and train --init
// treat them alike. ONNX files written by augflow carry that information in their metadata; for
// other ONNX files (a torchvision ResNet, say) the classes are numbered "0".."K-1" and the
// preprocessing is ImageNet's (shorter side 256, centre 224, ImageNet mean and std, RGB).
#pragma once

#include <string>

#include "model/checkpoint.hpp"

namespace augflow::pipeline {

/// Loads `path` by its extension: .onnx through the ONNX reader, anything else as a checkpoint.
/// Throws IoError when the file cannot be read, DataError (naming the file) when it is not a
/// model augflow can represent.
model::Checkpoint load_model(const std::string& path);

}  // namespace augflow::pipeline
