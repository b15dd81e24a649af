// Fully-connected (linear) layer with optional DropConnect, and the "dc" marker token.
//
// Dense ("fcN"): y = x W^T + b over the flattened input (N x in -> N x out), W is out x in,
// Initialised as PyTorch's nn.Linear: W and b uniform in +-1/sqrt(in) (see dense.cpp for why
// not He-normal). The GEMMs run on oneDNN's matmul, one thread per chunk (model/matmul_dnnl.hpp),
// or on Eigen without oneDNN, in chunks of the batch; dW and db as one partial per chunk, added
// in chunk order (model/parallel.hpp).
//
// DropConnect (Wan et al. 2013, "Regularization of Neural Networks using DropConnect"): in
// Mode::train each weight is kept with probability 1 - P. The paper draws one mask per sample;
// that needs N masked copies of W and N matrix-vector products instead of one GEMM, so here ONE
// mask is drawn per batch, from a generator keyed by (seed, step, layer index) only, so that
// every process of a data-parallel run draws the same mask. Kept weights are scaled by 1 / (1 - P) ("inverted", as in
// dropout), so Mode::test uses W unchanged; the paper's test-time Gaussian moment matching is not
// done. The bias is never masked.
//
// API: internal to augflow::model; not installed.
#pragma once

#include <string>
#include <vector>

#include "model/layer.hpp"
#include "model/parallel.hpp"

namespace augflow::model {

class Dense : public Layer {
 public:
  /// `in` is the input shape (n ignored): the layer flattens C*H*W features. `dropconnect` is
  /// the drop probability P in [0, 1) of DropConnect (0: off).
  Dense(const Shape& in, int out, double dropconnect = 0.0);

  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void initialize(Rng& rng) override;
  std::vector<Param*> params() override { return {&weight_, &bias_}; }
  double flops_per_sample(const Shape& in) const override;

  int in_features() const { return in_; }
  int out_features() const { return out_; }
  double dropconnect() const { return drop_; }
  Param& weight() { return weight_; }
  Param& bias() { return bias_; }

 private:
  int in_;
  int out_;
  double drop_;
  Param weight_;  // 1 x out x in x 1 (row-major out x in)
  Param bias_;    // 1 x out x 1 x 1
  bool masked_ = false;         // the last forward used a DropConnect mask
  FloatBuffer mask_;     // 0 or 1 / (1 - P) per weight
  FloatBuffer masked_w_; // W .* mask (the weights the last forward used)
  ChunkPartials grad_parts_;  // per chunk of the batch: dW (out x in) then db (out)
};

/// The "dcP" token: an identity layer. Its effect is applied by the following fc, to which the
/// network passes P as the "dropconnect" argument; the marker only keeps one layer per token.
class DropConnectMarker : public Layer {
 public:
  explicit DropConnectMarker(double p);
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override { return in; }
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
  double p() const { return p_; }

 private:
  double p_;
};

}  // namespace augflow::model
