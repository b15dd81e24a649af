// A network: the layers of a ModelSpec built for one input shape, run in sequence.
//
//   Net net(parse_model_spec("cnn-small", 10), {0, 1, 28, 28}, 10);
//   net.initialize(seed);
//   const Tensor& logits = net.forward(batch, ctx);   // N x classes
//   net.backward(dlogits);                            // adds into every Param's grad
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.hpp"
#include "model/layer.hpp"

namespace augflow::model {

/// Builds one layer for inputs of shape `in` (n ignored). Implemented by the layer files
/// (model/registry.cpp lists every kind). Throws SpecError/ShapeError with the token named.
/// `args` may carry extra keys set by the network: "dropconnect" (fc), "survival" (res).
LayerPtr make_layer(const LayerSpec& spec, const Shape& in);

class Net {
 public:
  /// Throws ShapeError when a layer does not fit its input, or when the last layer's width is
  /// not `classes` ("the model ends with fc7 but the data has 10 classes").
  Net(const ModelSpec& spec, Shape input, int classes);

  /// He-initialises every layer from (seed, layer index): the same seed, the same weights.
  void initialize(std::uint64_t seed);
  /// Runs every layer; the result (N x classes x 1 x 1) stays valid until the next forward.
  const Tensor& forward(const Tensor& x, ForwardContext ctx);
  /// Backpropagates d(loss)/d(logits) through every layer (after forward on the same batch).
  void backward(const Tensor& dlogits);
  void zero_grad();

  std::vector<Param*> params();
  std::vector<Tensor*> state();
  const ModelSpec& spec() const { return spec_; }
  Shape input_shape() const { return input_; }
  int classes() const { return classes_; }
  std::size_t layer_count() const { return layers_.size(); }
  Layer& layer(std::size_t i) { return *layers_[i]; }
  /// Multiply-adds of one forward pass per sample.
  double flops_per_sample() const;

  /// Seconds spent in each layer's forward and backward, summed over calls while a profile is
  /// attached (`augflow bench train --per-layer`). Null detaches; the caller owns the profile.
  struct Profile {
    std::vector<double> forward_seconds, backward_seconds;
  };
  void attach_profile(Profile* profile);

 private:
  ModelSpec spec_;
  Shape input_;
  int classes_;
  std::vector<LayerPtr> layers_;
  std::vector<Shape> shapes_;          // shapes_[i] = input of layer i; back() = output
  std::vector<Tensor> activations_;    // activations_[i] = output of layer i
  std::vector<Tensor> gradients_;      // gradients_[i] = d(loss)/d(input of layer i)
  const Tensor* input_batch_ = nullptr;
  Profile* profile_ = nullptr;
};

}  // namespace augflow::model
