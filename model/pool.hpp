// Pooling and reshaping layers over NCHW tensors:
//   MaxPool ("poolK")     K x K windows, stride K (non-overlapping); output floor(H/K) x floor(W/K)
//                         (rows/columns past the last whole window are dropped, as in PyTorch).
//                         Backward routes dy to the first element of each window (raster
//                         order) equal to the window's output, found again from x and y
//                         rather than stored by forward.
//   AvgPool ("avgpoolK")  the same windows, averaged.
//   GlobalAvgPool ("gap") N x C x H x W -> N x C x 1 x 1.
//   Flatten ("flatten")   N x C x H x W -> N x (C*H*W) x 1 x 1 (the same floats).
// No parameters; parallel over the batch (samples are independent, so any split gives the same
// result).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/layer.hpp"

namespace augflow::model {

class MaxPool : public Layer {
 public:
  MaxPool(const Shape& in, int k);
  std::string spec() const override { return "pool" + std::to_string(k_); }
  Shape output_shape(const Shape& in) const override;
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;

 private:
  int k_;
};

class AvgPool : public Layer {
 public:
  AvgPool(const Shape& in, int k);
  std::string spec() const override { return "avgpool" + std::to_string(k_); }
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
