// Pooling and reshaping layers over NCHW tensors:
//   MaxPool ("poolK[sS][pP]")  K x K windows, stride S (default K), padding P (default 0):
//                         exactly PyTorch's nn.MaxPool2d(K, S, P) in floor mode. Output
//                         floor((H + 2P - K) / S) + 1 per side (rows/columns past the last whole
//                         window are dropped); the padding counts as -infinity, so it never
//                         wins, and P <= K / 2 (PyTorch's rule) keeps every window over at least
//                         one input value. Backward routes each output's dy to the first maximum
//                         of its window in raster order (what PyTorch's CPU kernel records),
//                         found again from x rather than stored by forward; where windows
//                         overlap (S < K) the gradients of the windows sharing an input ADD.
//                         The general loop is the reference; non-overlapping windows without
//                         padding (S == K, P == 0: "pool2" after a conv) take a fast path that
//                         tests compare with it bit for bit.
//   AvgPool ("avgpoolK")  K x K windows, stride K, no padding, averaged.
//   GlobalAvgPool ("gap") N x C x H x W -> N x C x 1 x 1.
//   Flatten ("flatten")   N x C x H x W -> N x (C*H*W) x 1 x 1 (the same floats).
// No parameters; parallel over the batch (samples are independent, so any split gives the same
// result).
//
// API: internal to augflow::model; not installed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/layer.hpp"

namespace augflow::model {

class MaxPool : public Layer {
 public:
  /// Non-overlapping K x K windows (stride K, no padding).
  MaxPool(const Shape& in, int k) : MaxPool(in, k, k, 0) {}
  /// Throws SpecError unless k >= 1, stride >= 1 and 0 <= pad <= k / 2; ShapeError when the
  /// padded input is smaller than the window.
  MaxPool(const Shape& in, int k, int stride, int pad);
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;

  int kernel() const { return k_; }
  int stride() const { return s_; }
  int padding() const { return p_; }
  /// For tests: run the general (reference) loop even where the fast path applies.
  void force_reference(bool on) { force_reference_ = on; }

 private:
  bool fast() const { return s_ == k_ && p_ == 0 && !force_reference_; }
  void forward_fast(const Tensor& x, Tensor& y) const;
  void backward_fast(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) const;

  int k_, s_, p_;
  bool force_reference_ = false;
};

class AvgPool : public Layer {
 public:
  AvgPool(const Shape& in, int k);
  std::string spec() const override { return "avgpool" + std::to_string(k_); }
  int kernel() const { return k_; }  ///< the window side, which is also the stride
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;

 private:
  int k_;
};

class GlobalAvgPool : public Layer {
 public:
  std::string spec() const override { return "gap"; }
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
};

class Flatten : public Layer {
 public:
  std::string spec() const override { return "flatten"; }
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
};

}  // namespace augflow::model
