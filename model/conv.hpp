// 2-D convolution ("convNkK[sS][pP]"): N output channels, K x K kernel, stride S, zero padding
// P, over NCHW inputs. Two paths compute it: oneDNN's direct convolution kernels (the fast path,
// model/conv_dnnl.hpp: one thread per chunk, blocked layouts inside the chunk) when augflow is
// built with oneDNN, and im2col + GEMM (Caffe's scheme, the reference, described below) without
// it or where oneDNN has no kernel. Both keep the chunks and the chunk-order sums below.
//
// Per sample: col = im2col(x_i) is (C*K*K) x (Ho*Wo), y_i = W col + b with W the
// out x (C*K*K) weight matrix (He-normal, std sqrt(2 / (C*K*K))), b one bias per output
// channel. Backward recomputes col (keeping every sample's col would cost C*K*K times the input
// memory): dW += dy_i col^T, db += row sums of dy_i, dx_i = col2im(W^T dy_i). A 1x1 kernel with
// stride 1 and no padding uses x_i itself as col.
//
// Work runs over the batch in the fixed chunks of model/parallel.hpp; each chunk owns its col
// buffers and its partial dW/db, added to the gradients in chunk order, so results are
// bit-identical for any thread count. Buffers persist across calls: no allocation in the hot
// loop after the first batch.
//
// API: internal to augflow::model; not installed.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/conv_dnnl.hpp"
#include "model/layer.hpp"
#include "model/parallel.hpp"

namespace augflow::model {

class Conv2d : public Layer {
 public:
  /// `in` is the input shape (n ignored). `bias` false drops b (before batch norm it is
  /// redundant: the residual block uses that).
  Conv2d(const Shape& in, int out, int kernel, int stride = 1, int pad = 0, bool bias = true);

  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
  void initialize(Rng& rng) override;
  std::vector<Param*> params() override;
  double flops_per_sample(const Shape& in) const override;

  Param& weight() { return weight_; }
  Param& bias() { return bias_; }  ///< empty tensors when !has_bias()
  const Param& weight() const { return weight_; }
  const Param& bias() const { return bias_; }
  int in_channels() const { return c_; }
  int out_channels() const { return out_; }
  int kernel() const { return k_; }
  int stride() const { return s_; }
  int padding() const { return p_; }
  bool has_bias() const { return has_bias_; }
  /// Renames the parameters "<prefix>.weight" and "<prefix>.bias".
  void set_param_prefix(const std::string& prefix);
  /// True while the layer runs oneDNN's kernels (model/conv_dnnl.hpp); false: im2col + GEMM,
  /// the reference (builds without oneDNN, shapes oneDNN declines, or after use_reference()).
  bool fast_path() const { return dnnl_ != nullptr; }
  /// Switches to the im2col + GEMM reference path for good (tests compare the two).
  void use_reference() { dnnl_.reset(); }

 private:
  bool pointwise() const { return k_ == 1 && s_ == 1 && p_ == 0; }
  void im2col(const float* x, float* col) const;
  void col2im(const float* col, float* x) const;
  /// Grows the per-chunk buffers for `chunks` chunks (no shrinking).
  void reserve_chunks(int chunks, bool backward);
  /// Readies the fast path for a batch of `n` (false: it declined, the layer now uses im2col).
  bool prepare_fast_path(int n, bool backward);
  /// im2col + GEMM backward: fills grad_parts_ per chunk and dx (reserved by the caller).
  void backward_reference(const Tensor& x, const Tensor& dy, Tensor& dx);

  int c_, h_, w_;          // input channels, height, width
  int out_, k_, s_, p_;
  int ho_, wo_;            // output height, width
  bool has_bias_;
  Param weight_;           // 1 x out x (C*K*K) x 1 (row-major out x C*K*K)
  Param bias_;             // 1 x out x 1 x 1 (empty without bias)
  std::vector<FloatBuffer> col_;     // per chunk: (C*K*K) x (Ho*Wo)
  std::vector<FloatBuffer> dcol_;    // per chunk: (C*K*K) x (Ho*Wo)
  /// Per chunk: the weight gradient (out x C*K*K) then the bias gradient (out; zeros without a
  /// bias), grad_stride() floats.
  ChunkPartials grad_parts_;
  std::size_t grad_stride() const { return weight_.value.size() + static_cast<std::size_t>(out_); }
  std::unique_ptr<DnnlConv> dnnl_;   // the fast path (null: im2col + GEMM)
};

}  // namespace augflow::model
