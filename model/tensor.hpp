// The one tensor type of the model: float32, row-major, shape N x C x H x W (NCHW, the layout
// the loader's batches have). A fully-connected activation is N x C x 1 x 1.
//
// Shape letters are defined here once: N samples, C channels (or features), H height, W width.
//
// API: public, part of augflow::model; installed as <augflow/model/tensor.hpp>.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <Eigen/Core>

namespace augflow::model {

struct Shape {
  int n = 0;  ///< samples
  int c = 0;  ///< channels or features
  int h = 1;  ///< height
  int w = 1;  ///< width
  std::size_t size() const { return static_cast<std::size_t>(n) * c * h * w; }
  std::size_t per_sample() const { return static_cast<std::size_t>(c) * h * w; }
  bool operator==(const Shape&) const = default;
  std::string str() const;  ///< "NxCxHxW"
};

/// Float storage aligned to Eigen's widest packet (64 bytes with AVX-512). Why: Eigen's
/// vectorised paths on a Map (reductions, small products) peel a different number of leading
/// scalars depending on the address's alignment, and the scalar and packet paths round
/// differently; with heap addresses that vary from run to run (and between thread counts),
/// results would too. With every buffer aligned the same way, they depend on the data only.
using FloatBuffer = std::vector<float, Eigen::aligned_allocator<float>>;

/// Row-major float matrix and its maps: an N x (C*H*W) view of a tensor is a plain map.
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<Matrix>;
using ConstMatrixMap = Eigen::Map<const Matrix>;

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, float fill = 0.0f) : shape_(shape), data_(shape.size(), fill) {}

  const Shape& shape() const { return shape_; }
  std::size_t size() const { return data_.size(); }
  float* data() { return data_.data(); }
  const float* data() const { return data_.data(); }
  float& operator[](std::size_t i) { return data_[i]; }
  float operator[](std::size_t i) const { return data_[i]; }

  /// Changes the shape, keeping the allocation when it is large enough (no shrinking), so a
  /// training loop that reuses tensors does not allocate after the first batch.
  void resize(Shape shape) {
    shape_ = shape;
    data_.resize(shape.size());
  }
  void fill(float value) { std::fill(data_.begin(), data_.end(), value); }

  /// N x (C*H*W) view.
  MatrixMap rows() { return {data_.data(), shape_.n, static_cast<Eigen::Index>(shape_.per_sample())}; }
  ConstMatrixMap rows() const { return {data_.data(), shape_.n, static_cast<Eigen::Index>(shape_.per_sample())}; }
  /// Sample i as a pointer to its C*H*W floats.
  float* sample(int i) { return data_.data() + static_cast<std::size_t>(i) * shape_.per_sample(); }
  const float* sample(int i) const { return data_.data() + static_cast<std::size_t>(i) * shape_.per_sample(); }

  FloatBuffer& storage() { return data_; }
  const FloatBuffer& storage() const { return data_; }
  /// A copy of the values (for comparisons and tests).
  std::vector<float> values() const { return {data_.begin(), data_.end()}; }

 private:
  Shape shape_;
  FloatBuffer data_;
};

}  // namespace augflow::model
