// Inverted dropout ("dropP"; Srivastava et al. 2014), P = drop probability in [0, 1).
//
// Mode::train: each unit is kept with probability 1 - P and kept units are scaled by
// 1 / (1 - P), so the expected activation is unchanged and Mode::test is the identity. The
// mask of sample i comes from ctx.rng(i) only (seed, step, sample id, layer index): it does not
// depend on threads or on where the sample sits in the batch, and the same ctx repeats it.
// (DropConnect, the mask on weights, lives in model/dense.hpp.)
//
// API: internal to augflow::model; not installed.
#pragma once

#include <string>
#include <vector>

#include "model/layer.hpp"

namespace augflow::model {

class Dropout : public Layer {
 public:
  /// Throws SpecError unless 0 <= p < 1.
  explicit Dropout(double p);
  std::string spec() const override;
  Shape output_shape(const Shape& in) const override { return in; }
  void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) override;
  void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) override;
  double p() const { return p_; }

 private:
  double p_;
  bool masked_ = false;      // the last forward was in Mode::train
  FloatBuffer mask_;  // 0 or 1 / (1 - p) per unit of the last batch
};

}  // namespace augflow::model
