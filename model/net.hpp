// A network: the layers of a ModelSpec built for one input shape, run in sequence.
//
//   Net net(parse_model_spec("cnn-small", 10), {0, 1, 28, 28}, 10);
//   net.initialize(seed);
//   const Tensor& logits = net.forward(batch, ctx);   // N x classes
//   net.backward(dlogits);                            // adds into every Param's grad
//
// Fine-tuning: net.freeze(n) keeps layers [0, n) fixed. They run forward in Mode::test whatever
// the context says (batch norm normalises with its running statistics and leaves them as they
// are, dropout and stochastic depth take their expected values), backward stops at layer n
// (whose input gradient is not computed, as for the first layer of every network), and
// trainable_params() leaves their parameters out: the optimizer, the regularizer and EMA
// averaging take that list, while params() (checkpoints) still has every parameter.
//
// API: public, part of augflow::model; installed as <augflow/model/net.hpp>.
#pragma once

#include <cstdint>
#include <vector>

#include "augflow/model/config.hpp"
#include "augflow/model/layer.hpp"

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

  /// Keeps layers [0, layers) fixed (see above); 0 trains every layer. The last layer stays
  /// trainable: throws ConfigError, naming the value and the layer count, unless
  /// 0 <= layers < layer_count().
  void freeze(int layers);
  /// The number of frozen layers (0 unless freeze was called).
  std::size_t frozen() const { return frozen_; }

  /// Every parameter, frozen ones included (what checkpoints store).
  std::vector<Param*> params();
  /// The parameters of layers [frozen(), layer_count()), in the order of params(): what the
  /// optimizer steps, the regularizer penalises and EMA averages.
  std::vector<Param*> trainable_params();
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
  std::vector<bool> passes_through_;   // a ReLU fused into the batch norm before it: no work of its own
  /// The output of layer i: activations_[i], or its input's for a layer that passes through.
  const Tensor& output_of(std::size_t i) const;
  const Tensor* input_batch_ = nullptr;
  std::size_t frozen_ = 0;
  Profile* profile_ = nullptr;
};

}  // namespace augflow::model
