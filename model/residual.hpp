// Residual basic block ("resN[sS][b0]"; He et al. 2016) with optional stochastic depth (Huang et
// al. 2016, "Deep Networks with Stochastic Depth").
//
// With batch norm (b1, the default):
//   branch   = bn2(conv3x3(relu(bn1(conv3x3_stride_s(x)))))      (convs without bias: bn follows)
//   shortcut = x, or bn_p(conv1x1_stride_s(x)) when channels or stride change
// Without batch norm (b0: the block as PyTorch's ONNX export writes a BasicBlock, its batch
// norms folded into the convs' weights and biases):
//   branch   = conv3x3(relu(conv3x3_stride_s(x)))                 (convs with bias)
//   shortcut = x, or conv1x1_stride_s(x) (with bias) when channels or stride change
// Both:
//   y        = relu(shortcut + g * branch)
// g = 1 without stochastic depth. With survival probability p < 1: in Mode::train g is 1 with
// probability p and 0 otherwise, drawn PER SAMPLE from ctx.rng(sample) (the paper drops a block
// for the whole mini-batch; per sample keeps the gates independent of batch composition). The
// branch is still computed for every sample, so a dropped sample still contributes to the
// branch's batch-norm statistics. In Mode::test g = p (the expected value, as in the paper).
// Built from Conv2d, BatchNorm and ReLU (one implementation of each op); parameters are named
// "res.conv1.weight", "res.bn1.gamma", ..., "res.proj.weight", "res.proj_bn.gamma" (b0 adds
// "res.conv1.bias", "res.conv2.bias", "res.proj.bias" and has no bn); checkpoints rely on them.
// With input_gradient() off (the first trained layer of a partly frozen network) backward
// writes no dx.
//
// API: internal to augflow::model; not installed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/batch_norm.hpp"
#include "model/conv.hpp"
#include "model/layer.hpp"

namespace augflow::model {

class Residual : public Layer {
 public:
  /// `survival` in (0, 1]: the probability that the residual branch is kept in training.
  /// `batch_norm` false builds the b0 block (convs with bias, no batch norm).
  Residual(const Shape& in, int out, int stride = 1, double survival = 1.0, bool batch_norm = true);

  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void initialize(Rng& rng) override;
  std::vector<Param*> params() override;
  std::vector<Tensor*> state() override;
  double flops_per_sample(const Shape& in) const override;

  double survival() const { return survival_; }
  bool batch_norm() const { return bn1_ != nullptr; }
  int stride() const { return s_; }
  int out_channels() const { return out_; }
  bool has_projection() const { return proj_ != nullptr; }

  /// The parts, for the ONNX reader and writer. The batch norms are nullptr without batch norm
  /// (b0), the projection and its batch norm nullptr for an identity shortcut.
  Conv2d& conv1() { return conv1_; }
  Conv2d& conv2() { return conv2_; }
  BatchNorm* bn1() { return bn1_.get(); }
  BatchNorm* bn2() { return bn2_.get(); }
  Conv2d* projection() { return proj_.get(); }
  BatchNorm* projection_bn() { return proj_bn_.get(); }
  const Conv2d& conv1() const { return conv1_; }
  const Conv2d& conv2() const { return conv2_; }
  const BatchNorm* bn1() const { return bn1_.get(); }
  const BatchNorm* bn2() const { return bn2_.get(); }
  const Conv2d* projection() const { return proj_.get(); }
  const BatchNorm* projection_bn() const { return proj_bn_.get(); }

 private:
  Shape in_;
  int out_, s_;
  double survival_;
  Conv2d conv1_;
  std::unique_ptr<BatchNorm> bn1_;
  Conv2d conv2_;
  std::unique_ptr<BatchNorm> bn2_;
  std::unique_ptr<Conv2d> proj_;
  std::unique_ptr<BatchNorm> proj_bn_;
  // Activations of the last forward (kept for backward) and backward scratch. r1_ is
  // relu(bn1(c1_)), written by bn1 with its fused ReLU (relu(c1_) without batch norm). bn2 and
  // the projection's bn are applied to c2_ and p1_ inside the final add, never stored.
  Tensor c1_, r1_, c2_, p1_;
  Tensor d_branch_, d_c2_, d_r1_, d_c1_, d_short_, d_p1_, d_px_;
  std::vector<float> gate_;  // g per sample of the last forward
};

}  // namespace augflow::model
