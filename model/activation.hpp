// Element-wise activations: ReLU ("relu"), leaky ReLU ("lrelu[A]", slope A for x < 0, default
// 0.01; Maas et al. 2013) and tanh ("tanh"). Output shape = input shape; no parameters.
// At exactly x = 0 the derivative is that of the x < 0 branch (0 for ReLU, A for leaky ReLU),
// as in PyTorch.
//
// API: internal to augflow::model; not installed.
#pragma once

#include <string>

#include "model/layer.hpp"

namespace augflow::model {

class ReLU : public Layer {
 public:
  std::string spec() const override { return "relu"; }
  Shape output_shape(const Shape& in) const override { return in; }
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
};

class LeakyReLU : public Layer {
 public:
  static constexpr double kDefaultSlope = 0.01;
  /// `slope` (A) must be finite and in [0, 1).
  explicit LeakyReLU(double slope = kDefaultSlope);
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override { return in; }
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
  double slope() const { return slope_; }

 private:
  double slope_;
};

class Tanh : public Layer {
 public:
  std::string spec() const override { return "tanh"; }
  Shape output_shape(const Shape& in) const override { return in; }
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
};

}  // namespace augflow::model
