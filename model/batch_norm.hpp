// Batch normalisation ("bn"; Ioffe and Szegedy 2015).
//
// Statistics are per channel: over N x H x W for a convolutional activation (H*W > 1), which
// for an N x C x 1 x 1 activation (after an fc) is per feature over N.
// - Mode::train: normalises with the batch mean and the biased batch variance, and updates the
//   running statistics with momentum 0.1: running = 0.9 running + 0.1 batch, where the running
//   variance takes the UNBIASED batch variance (as PyTorch does; with one value per channel
//   the running variance is left unchanged).
// - Mode::test: normalises with the running statistics (mean 0, variance 1 initially).
// y = gamma * (x - mean) / sqrt(var + eps) + beta, eps = 1e-5; gamma (1) and beta (0) are
// trained but not regularised; running mean and variance are state() (saved, not trained).
// Sums are accumulated in double, one channel per task, so results do not depend on threads.
// The batch statistics take one read of the batch (shifted sums of x and x^2, see forward).
// With set_fused_relu(true) the layer is "bn" followed by ReLU in one pass: y = max(0, bn(x)),
// and backward takes the ReLU's mask from y (a layer that owns both, such as a residual block,
// saves the ReLU's read and write of the whole activation each way).
//
// API: internal to augflow::model; not installed.
#pragma once

#include <string>
#include <vector>

#include "model/layer.hpp"

namespace augflow::model {

class BatchNorm : public Layer {
 public:
  static constexpr double kEps = 1e-5;
  static constexpr double kMomentum = 0.1;

  explicit BatchNorm(const Shape& in);

  std::string spec() const override { return "bn"; }
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void initialize(Rng& rng) override;
  std::vector<Param*> params() override { return {&gamma_, &beta_}; }
  std::vector<Tensor*> state() override { return {&running_mean_, &running_var_}; }

  Param& gamma() { return gamma_; }
  Param& beta() { return beta_; }
  Tensor& running_mean() { return running_mean_; }
  Tensor& running_var() { return running_var_; }
  /// forward() without writing y: the statistics it would normalise with (and, in training, the
  /// running statistics' update), for a layer that applies y = x * scale(c) + shift(c) inside a
  /// pass of its own (a residual block's final add). Not with the fused ReLU. backward() then
  /// takes any tensor as y: without the fused ReLU it does not read it.
  void statistics(const Tensor& x, const ForwardContext& ctx);
  /// The per-channel affine map of the last forward or statistics(), exactly as forward applies it.
  float scale(int c) const { return gamma_.value[c] * inv_std_[c]; }
  float shift(int c) const { return beta_.value[c] - mean_[c] * scale(c); }
  /// Applies a ReLU to the output in the same pass (and its mask in backward).
  void set_fused_relu(bool fused) { fused_relu_ = fused; }
  /// Renames the parameters "<prefix>.gamma" and "<prefix>.beta".
  void set_param_prefix(const std::string& prefix);

 private:
  void run_forward(const Tensor& x, Tensor* y, const ForwardContext& ctx);  // y: nullptr for statistics()

  int c_, h_, w_;
  Param gamma_;          // 1 x C x 1 x 1
  Param beta_;           // 1 x C x 1 x 1
  Tensor running_mean_;  // 1 x C x 1 x 1
  Tensor running_var_;   // 1 x C x 1 x 1
  bool train_ = false;             // the mode of the last forward
  bool fused_relu_ = false;
  std::vector<float> mean_;        // per channel: the mean the last forward used
  std::vector<float> inv_std_;     // per channel: 1 / sqrt(var + eps) of the last forward
};

}  // namespace augflow::model
