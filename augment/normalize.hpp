// The last step of every pipeline: 8-bit HWC (BGR) -> float32 CHW (RGB planes), computing
// (x / 255 - mean[c]) / std[c] through a 256-entry table per channel, fused with the layout
// change so the pixels are read once.
//
// API: public, part of augflow::augment; installed as <augflow/augment/normalize.hpp>.
#pragma once

#include <array>
#include <string>

#include <opencv2/core.hpp>

#include "augflow/augment/args.hpp"

namespace augflow::augment {

class Normalize {
 public:
  /// "none": x / 255 (mean 0, std 1), the identity of the presets.
  Normalize();
  explicit Normalize(const Args& args);

  const Args& args() const { return args_; }
  /// Mean and std per output plane (R, G, B), or the first entry for grey.
  const std::array<double, 3>& mean() const { return mean_; }
  const std::array<double, 3>& std() const { return std_; }

  /// Writes channels*height*width floats to `chw`. Planes are in RGB order for colour images.
  void to_chw(const cv::Mat& image, float* chw) const;

 private:
  Args args_;
  std::array<double, 3> mean_{0, 0, 0};
  std::array<double, 3> std_{1, 1, 1};
  /// value -> (v/255 - mean)/std for R, G, B and (last) grey, which uses the means of the three;
  /// built once because to_chw runs for every sample and view.
  std::array<std::array<float, 256>, 4> tables_{};
  void build_tables();
};

}  // namespace augflow::augment
