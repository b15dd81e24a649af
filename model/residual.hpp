// Residual basic block ("resN[sS]"; He et al. 2016) with optional stochastic depth (Huang et
// al. 2016, "Deep Networks with Stochastic Depth").
//
//   branch   = bn2(conv3x3(relu(bn1(conv3x3_stride_s(x)))))      (convs without bias: bn follows)
//   shortcut = x, or bn_p(conv1x1_stride_s(x)) when channels or stride change
//   y        = relu(shortcut + g * branch)
// g = 1 without stochastic depth. With survival probability p < 1: in Mode::train g is 1 with
// probability p and 0 otherwise, drawn PER SAMPLE from ctx.rng(sample) (the paper drops a block
// for the whole mini-batch; per sample keeps the gates independent of batch composition). The
// branch is still computed for every sample, so a dropped sample still contributes to the
// branch's batch-norm statistics. In Mode::test g = p (the expected value, as in the paper).
// Built from Conv2d, BatchNorm and ReLU; parameters are named "res.conv1.weight",
// "res.bn1.gamma", ..., "res.proj.weight", "res.proj_bn.gamma".
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
  Residual(const Shape& in, int out, int stride = 1, double survival = 1.0);

  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void initialize(Rng& rng) override;
  std::vector<Param*> params() override;
  std::vector<Tensor*> state() override;
  double flops_per_sample(const Shape& in) const override;

  double survival() const { return survival_; }
  bool has_projection() const { return proj_ != nullptr; }

 private:
  Shape in_;
  int out_, s_;
  double survival_;
  Conv2d conv1_;
  BatchNorm bn1_;
  Conv2d conv2_;
  BatchNorm bn2_;
  std::unique_ptr<Conv2d> proj_;
  std::unique_ptr<BatchNorm> proj_bn_;
  // Activations of the last forward (kept for backward) and backward scratch.
  Tensor c1_, b1_, r1_, c2_, branch_, p1_, shortcut_;
  Tensor d_branch_, d_c2_, d_r1_, d_b1_, d_c1_, d_short_, d_p1_, d_px_;
  std::vector<float> gate_;  // g per sample of the last forward
};

}  // namespace augflow::model
