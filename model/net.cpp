// The network container: builds the layers of a ModelSpec for one input shape and runs them in
// sequence (see model/net.hpp).
//
// One layer per token (an "sdP" token is not in ModelSpec::layers), so layer i is token i of
// the printed spec. What the network adds to the tokens before make_layer sees them:
// - the P of a dcP token becomes the "dropconnect" argument of the next fc (the dc token itself
//   builds an identity marker layer);
// - every res block gets a "survival" argument, its stochastic-depth survival probability,
//   decaying linearly from 1 at the input to ModelSpec::survival (p_L) at the last block:
//   p_l = 1 - (l / L) (1 - p_L) for the l-th of L blocks (Huang et al. 2016, eq. 4);
//   1 everywhere when the spec has no sdP.
//
// Layer i's parameters are named "i.<the layer's own name>" (e.g. "3.weight"), made unique by
// appending ".j" (the parameter's position in the layer) if a layer repeats a name, so that
// checkpoints can match them by name. The names are assigned once, at construction.
#include "model/net.hpp"

#include <chrono>
#include <set>
#include <string>

#include "common/error.hpp"
#include "model/batch_norm.hpp"

namespace augflow::model {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/// The stream of the initialisation generators ("INIT"), apart from the forward-pass streams.
constexpr std::uint64_t kInitStream = 0x494E4954ull;

/// The token as written in the compact form ("conv32k3p1"), for messages.
std::string token_text(const LayerSpec& layer) {
  try {
    return print_model_spec(ModelSpec{{layer}, 1.0});
  } catch (const Error&) {
    return layer.kind;
  }
}

std::string chw(const Shape& s) {
  return std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
}

}  // namespace

Net::Net(const ModelSpec& spec, Shape input, int classes) : spec_(spec), input_(input), classes_(classes) {
  if (input.c < 1 || input.h < 1 || input.w < 1)
    throw ShapeError("model: the input shape " + chw(input) + " has an empty dimension");
  if (classes < 1) throw ShapeError("model: the class count must be at least 1, not " + std::to_string(classes));
  if (spec.layers.empty()) throw SpecError("model spec: the model has no layers");

  int res_total = 0;
  for (const auto& layer : spec.layers) res_total += layer.kind == "res";

  // Shapes are per sample: n is 1 while the network is built.
  Shape shape = input;
  shape.n = 1;
  input_.n = 0;
  const double* pending_dc = nullptr;
  int res_seen = 0;
  std::set<std::string> names;
  for (std::size_t t = 0; t < spec.layers.size(); ++t) {
    const LayerSpec& token = spec.layers[t];
    if (token.kind == "dc") {
      const auto it = token.args.find("p");
      if (it == token.args.end()) throw SpecError("model spec: dc without a probability", "dc", t);
      pending_dc = &it->second;
    }
    LayerSpec built = token;
    if (token.kind == "fc" && pending_dc) {
      built.args["dropconnect"] = *pending_dc;
      pending_dc = nullptr;
    }
    if (token.kind == "res") {
      ++res_seen;
      built.args["survival"] = 1.0 - (static_cast<double>(res_seen) / res_total) * (1.0 - spec.survival);
    }

    LayerPtr layer;
    Shape out;
    const std::size_t index = layers_.size();
    try {
      layer = make_layer(built, shape);
      out = layer->output_shape(shape);
    } catch (const ShapeError& e) {
      throw ShapeError("model: layer " + std::to_string(index) + " (" + token_text(token) + ") does not fit its input " +
                       chw(shape) + ": " + e.what());
    }
    if (out.c < 1 || out.h < 1 || out.w < 1)
      throw ShapeError("model: layer " + std::to_string(index) + " (" + layer->spec() + ") turns its input " +
                       chw(shape) + " into " + chw(out) + "; the input is too small for this spec");

    std::size_t j = 0;
    for (Param* p : layer->params()) {
      std::string name = std::to_string(index) + "." + (p->name.empty() ? "param" + std::to_string(j) : p->name);
      if (names.count(name)) name += "." + std::to_string(j);
      names.insert(name);
      p->name = std::move(name);
      ++j;
    }
    shapes_.push_back(shape);
    layers_.push_back(std::move(layer));
    shape = out;
  }
  if (pending_dc)
    throw SpecError("model spec: dc (DropConnect) is not followed by an fc", "dc", spec.layers.size() - 1);
  shapes_.push_back(shape);

  const std::string last = layers_.back()->spec();
  if (shape.h != 1 || shape.w != 1)
    throw ShapeError("model: the model ends with " + last + ", whose output per sample is " + chw(shape) +
                     ", but the logits must be one value per class; end the spec with fc" +
                     std::to_string(classes));
  if (shape.c != classes)
    throw ShapeError("model: the model ends with " + last + " (" + std::to_string(shape.c) +
                     " outputs) but the data has " + std::to_string(classes) + " classes; end the spec with fc" +
                     std::to_string(classes));
  activations_.resize(layers_.size());
  gradients_.resize(layers_.size());
  layers_.front()->set_input_gradient(false);  // nothing consumes d(loss)/d(data)
  // "bn-relu": the batch norm applies the ReLU in its own passes and the ReLU layer passes its
  // input through, which saves a read and a write of the activation each way (the same values:
  // BatchNorm.FusedReluEqualsBatchNormThenRelu).
  passes_through_.assign(layers_.size(), false);
  for (std::size_t i = 0; i + 1 < layers_.size(); ++i) {
    auto* bn = dynamic_cast<BatchNorm*>(layers_[i].get());
    if (bn && layers_[i + 1]->spec() == "relu" && !passes_through_[i]) {
      bn->set_fused_relu(true);
      passes_through_[i + 1] = true;
    }
  }
}

const Tensor& Net::output_of(std::size_t i) const {
  while (passes_through_[i]) --i;  // layer 0 never passes through
  return activations_[i];
}

void Net::initialize(std::uint64_t seed) {
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Rng rng({seed, 0, i}, kInitStream);
    layers_[i]->initialize(rng);
  }
}

const Tensor& Net::forward(const Tensor& x, ForwardContext ctx) {
  const Shape& s = x.shape();
  if (s.c != input_.c || s.h != input_.h || s.w != input_.w || s.n < 1)
    throw ShapeError("model: the batch is " + s.str() + " but the model was built for inputs of " + chw(input_));
  const Tensor* in = &x;
  const Mode mode = ctx.mode;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    if (passes_through_[i]) continue;  // a ReLU fused into the batch norm before it
    ctx.layer_index = static_cast<int>(i);
    ctx.mode = i < frozen_ ? Mode::test : mode;
    const auto start = profile_ ? Clock::now() : Clock::time_point{};
    layers_[i]->forward(*in, activations_[i], ctx);
    if (profile_) profile_->forward_seconds[i] += seconds_since(start);
    in = &activations_[i];
  }
  input_batch_ = &x;
  return output_of(layers_.size() - 1);
}

void Net::backward(const Tensor& dlogits) {
  if (!input_batch_) throw Error("model: backward called before forward");
  if (dlogits.shape() != activations_.back().shape())
    throw ShapeError("model: the logits' gradient is " + dlogits.shape().str() + " but the logits are " +
                     activations_.back().shape().str());
  // One gradient tensor per layer, like the activations: each keeps its shape from batch to
  // batch, so no buffer is regrown (and zero-filled by std::vector) every step. Two tensors
  // used in turn would halve the memory but regrow at every layer whose input is larger than
  // its output (pooling), which cost about 5% of a cnn-small step.
  const Tensor* dy = &dlogits;
  for (std::size_t k = layers_.size(); k-- > frozen_;) {
    if (passes_through_[k]) continue;  // its batch norm applies the ReLU's mask
    const Tensor& x = k == 0 ? *input_batch_ : output_of(k - 1);
    const auto start = profile_ ? Clock::now() : Clock::time_point{};
    layers_[k]->backward(x, activations_[k], *dy, gradients_[k]);
    if (profile_) profile_->backward_seconds[k] += seconds_since(start);
    dy = &gradients_[k];
  }
}

void Net::freeze(int layers) {
  const auto count = static_cast<long long>(layers_.size());
  if (layers < 0 || layers >= count)
    throw ConfigError("model: cannot freeze " + std::to_string(layers) + " layers of a model with " +
                      std::to_string(count) + " layers (" + print_model_spec(spec_) +
                      "): the last layer must stay trainable, so freeze 0 to " + std::to_string(count - 1) +
                      " layers (layer i is token i of the spec)");
  frozen_ = static_cast<std::size_t>(layers);
  // Layer `frozen_` is the first whose backward runs: its input gradient would go to frozen
  // layers only. Layer 0's never has a consumer.
  for (std::size_t i = 0; i < layers_.size(); ++i) layers_[i]->set_input_gradient(i > frozen_);
}

void Net::attach_profile(Profile* profile) {
  profile_ = profile;
  if (!profile_) return;
  profile_->forward_seconds.assign(layers_.size(), 0.0);
  profile_->backward_seconds.assign(layers_.size(), 0.0);
}

void Net::zero_grad() {
  for (Param* p : params()) {
    if (p->grad.shape() != p->value.shape()) p->grad.resize(p->value.shape());
    p->grad.fill(0.0f);
  }
}

std::vector<Param*> Net::params() {
  std::vector<Param*> all;
  for (auto& layer : layers_)
    for (Param* p : layer->params()) all.push_back(p);
  return all;
}

std::vector<Param*> Net::trainable_params() {
  std::vector<Param*> trainable;
  for (std::size_t i = frozen_; i < layers_.size(); ++i)
    for (Param* p : layers_[i]->params()) trainable.push_back(p);
  return trainable;
}

std::vector<Tensor*> Net::state() {
  std::vector<Tensor*> all;
  for (auto& layer : layers_)
    for (Tensor* t : layer->state()) all.push_back(t);
  return all;
}

double Net::flops_per_sample() const {
  double total = 0;
  for (std::size_t i = 0; i < layers_.size(); ++i) total += layers_[i]->flops_per_sample(shapes_[i]);
  return total;
}

}  // namespace augflow::model
