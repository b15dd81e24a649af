// The layer interface of the model (in the spirit of Caffe and tiny-dnn, with a dlib-style
// contract).
//
// Contract:
// - output_shape(in) is a pure function of the input shape; a layer checks it and throws
//   ShapeError with a message naming the layer when the input does not fit.
// - forward(x, y, ctx) writes y (resizing it) and caches what backward needs. In Mode::train
//   randomness (dropout masks, DropConnect masks, stochastic depth) is drawn from
//   ctx.rng(sample, layer) only: a pure function of (seed, step, sample, layer index), never of
//   the thread. In Mode::test a layer is deterministic (dropout is the identity, batch norm uses
//   its running statistics, stochastic depth uses the expected value).
// - backward(x, y, dy, dx) is called after forward on the same x, y; it ASSIGNS dx and ADDS to
//   each parameter's gradient (the optimizer step zeroes them: llm.c's "+=" and zero_grad).
// - params() lists the trained parameters (value and gradient); state() lists tensors that are
//   saved in checkpoints but not trained (batch-norm running statistics).
// - Work is parallel over the batch with TBB in fixed chunks whose layout depends only on the
//   batch size, reduced in chunk order, so results do not depend on the thread count. Eigen is
//   single-threaded (EIGEN_DONT_PARALLELIZE).
//
// API: public, part of augflow::model; installed as <augflow/model/layer.hpp>.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "augflow/common/rng.hpp"
#include "augflow/model/tensor.hpp"

namespace augflow::model {

enum class Mode { train, test };

/// Where a layer's randomness comes from during one forward pass.
struct ForwardContext {
  Mode mode = Mode::test;
  std::uint64_t seed = 0;
  std::uint64_t step = 0;   ///< global training step (batch counter): masks change every step
  int layer_index = 0;      ///< set by the network for each layer
  /// Ids of the batch's samples (data-set indices), so that a sample's mask does not depend on
  /// where in the batch it landed; empty means 0..N-1.
  const std::vector<std::uint64_t>* sample_ids = nullptr;

  /// The generator for `sample` (position in the batch) of the current layer.
  Rng rng(int sample) const {
    const std::uint64_t id = sample_ids && static_cast<std::size_t>(sample) < sample_ids->size()
                                 ? (*sample_ids)[sample]
                                 : static_cast<std::uint64_t>(sample);
    return Rng({seed, step, id}, 0x4C41594552ull + static_cast<std::uint64_t>(layer_index));
  }
};

/// A trained parameter: value and gradient of the same shape.
struct Param {
  std::string name;     ///< "conv1.weight", "fc3.bias", ...
  Tensor value;
  Tensor grad;
  bool regularized = true;  ///< weights yes; biases and batch-norm parameters no (by default)
};

class Layer {
 public:
  virtual ~Layer() = default;

  /// The compact spec token of this layer, e.g. "conv32k3p1", "bn", "drop0.5".
  virtual std::string spec() const = 0;
  virtual Shape output_shape(const Shape& in) const = 0;
  virtual void forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) = 0;
  virtual void backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) = 0;
  /// Draws the initial weights from `rng` (conv: He-normal; fc: PyTorch's uniform default).
  virtual void initialize(Rng& rng) { (void)rng; }
  virtual std::vector<Param*> params() { return {}; }
  virtual std::vector<Tensor*> state() { return {}; }
  /// Multiply-adds of one forward pass per sample (for the GFLOP/s figure).
  virtual double flops_per_sample(const Shape& in) const {
    (void)in;
    return 0.0;
  }

  /// Whether backward must write dx. Net turns it off for its first layer, whose input is the
  /// data (as PyTorch does for inputs that do not require a gradient): there dx would cost an
  /// fc or conv layer as much as its weight gradient. Layers may ignore it and write dx anyway.
  void set_input_gradient(bool needed) { input_gradient_ = needed; }
  bool input_gradient() const { return input_gradient_; }

 protected:
  bool input_gradient_ = true;
};

using LayerPtr = std::unique_ptr<Layer>;

}  // namespace augflow::model
