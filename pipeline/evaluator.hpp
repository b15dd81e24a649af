// Test-time evaluation (augflow eval): "average out the randomness". Each image is decoded once
// and cut into deterministic views (center, ten-crop, multi-scale ten-crop); the model's
// softmax probabilities (or logits, --average logits) are averaged over the views, and an
// ensemble averages its members' probabilities, each member with its own views.
//
// View defaults follow from the training spec a checkpoint records (rule documented in the
// README, "augflow eval"): the crop is the model's input size S, and
//   scale_crop(min,max,S)  -> resize the shorter side to min (ResNet: 256), then crop S (224);
//   resized_crop(S)        -> resize to round(S * 8 / 7) (256 for 224), then crop S;
//   center_crop(R,S)       -> resize to R, crop S;
//   pad_crop(P,S)          -> pad the image by P (as trained, zeros) and take the views of the
//                             padded image without resizing it (resize = S + 2P): center is
//                             then the image itself, ten-crop its P-pixel shifts and mirrors;
//   no crop                -> resize to S, crop S (the image as trained).
// Multi-scale defaults to the ResNet scales 224,256,384,480,640 for S >= 224, and otherwise to
// R, R + R/8, R + R/4 with R the resize above (28x28 Fashion-MNIST: 32, 36, 40).
//
// Loading the members, their views and the lock-step loaders are predictor.hpp's (shared with
// augflow predict): memory stays bounded by the batch size whatever the data set's size (only
// class counts and the confusion matrix grow with it, by classes^2).
//
// API: public, part of augflow::pipeline; installed as <augflow/pipeline/evaluator.hpp>.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "augflow/pipeline/predictor.hpp"

namespace augflow::pipeline {

/// The test-time options (members, views, batch, threads) are predictor.hpp's, shared with
/// augflow predict.
struct EvalConfig : TestTimeOptions {
  std::string data;   ///< folder, list file, fashion-mnist[:test]
  int repeats = 1;    ///< timed passes; images_per_second is their median
  std::string out;    ///< folder for confusion.csv/.png and per_class.csv; empty: none
};

struct EvalMetrics {
  double top1 = 0;  ///< fraction of images whose most probable class is right
  double top5 = 0;  ///< ... among the 5 most probable (all classes when there are fewer)
  double nll = 0;   ///< mean -log p(true class), p clamped at 1e-12
};

struct MemberResult {
  std::string path;
  std::string views;  ///< the view spec this member was evaluated with
  EvalMetrics metrics;
};

struct EvalResult {
  std::string views;        ///< the first member's view spec (printed)
  int views_per_image = 0;  ///< the largest over the members
  EvalMetrics metrics;      ///< of the ensemble (of the model, for one member)
  std::vector<MemberResult> members;
  std::vector<std::string> class_names;
  std::vector<double> per_class_accuracy;           ///< top-1 per true class
  std::vector<std::vector<std::size_t>> confusion;  ///< [true][predicted] image counts
  std::size_t images = 0;                           ///< images evaluated
  std::size_t skipped_files = 0;
  double images_per_second = 0;  ///< median over the timed passes, loading included
};

/// Evaluates config.data with every member. Throws DataError when a model's classes differ
/// from the data's, ConfigError/SpecError for bad settings.
EvalResult evaluate(const EvalConfig& config, const std::function<void(const std::string&)>& log);

/// Writes confusion.csv, confusion.png and per_class.csv into `folder` (created).
void write_confusion(const std::string& folder, const EvalResult& result);

}  // namespace augflow::pipeline
