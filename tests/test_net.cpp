// The network container on the real layers: shapes of the presets, the class-count check, what
// the network adds to the tokens (DropConnect, stochastic depth), forward/backward plumbing
// (checked against central differences), initialisation, and copying to and from checkpoints.
#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "model/checkpoint.hpp"
#include "model/config.hpp"
#include "model/dense.hpp"
#include "model/net.hpp"
#include "model/residual.hpp"
#include "tests/fixtures.hpp"

namespace augflow::model {
namespace {

std::string error_of(const std::string& spec, Shape input, int classes) {
  try {
    Net net(parse_model_spec(spec, classes), input, classes);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << spec << " built";
  return {};
}

TEST(Net, PresetsBuildAndRunOnSmallAndLargeInputs) {
  for (const char* preset : {"twolayer", "mlp", "cnn-small", "resnet-mini"}) {
    for (const Shape input : {Shape{0, 1, 28, 28}, Shape{0, 3, 64, 64}}) {
      SCOPED_TRACE(std::string(preset) + " on " + std::to_string(input.c) + "x" + std::to_string(input.h));
      const int classes = 10;
      const ModelSpec spec = parse_model_spec(preset, classes);
      Net net(spec, input, classes);
      EXPECT_EQ(net.layer_count(), spec.layers.size()) << "one layer per token";
      EXPECT_EQ(net.classes(), classes);
      EXPECT_EQ(net.input_shape().c, input.c);
      EXPECT_GT(net.flops_per_sample(), 0.0);
      net.initialize(1);
      Tensor x = test::random_tensor({2, input.c, input.h, input.w}, 3);
      ForwardContext ctx;
      ctx.mode = Mode::train;
      const Tensor& y = net.forward(x, ctx);
      EXPECT_EQ(y.shape(), (Shape{2, classes, 1, 1}));
      for (std::size_t i = 0; i < y.size(); ++i) ASSERT_TRUE(std::isfinite(y[i]));
      net.zero_grad();
      net.backward(Tensor(y.shape(), 0.1f));
      double grad_norm = 0;
      for (Param* p : net.params()) {
        EXPECT_EQ(p->grad.shape(), p->value.shape()) << p->name;
        for (std::size_t i = 0; i < p->grad.size(); ++i) grad_norm += std::abs(p->grad[i]);
      }
      EXPECT_GT(grad_norm, 0.0);
      ctx.mode = Mode::test;
      EXPECT_EQ(net.forward(x, ctx).shape(), (Shape{2, classes, 1, 1}));
    }
  }
}

TEST(Net, FlopsOfCnnSmall) {
  // Multiply-adds of the convolutions and fcs on 1x28x28 (the other layers are cheap):
  // 28*28*32*9 + 14*14*64*32*9 + 64*7*7*128 + 128*10.
  const double expected = 28.0 * 28 * 32 * 9 + 14.0 * 14 * 64 * 32 * 9 + 64.0 * 7 * 7 * 128 + 128.0 * 10;
  const Net net(parse_model_spec("cnn-small", 10), {0, 1, 28, 28}, 10);
  EXPECT_GE(net.flops_per_sample(), expected * 0.99);
  EXPECT_LE(net.flops_per_sample(), expected * 1.1);
}

TEST(Net, ClassCountMismatchSaysHowToFix) {
  const std::string message = error_of("fc50-relu-fc7", {0, 1, 28, 28}, 10);
  EXPECT_NE(message.find("the model ends with fc7"), std::string::npos) << message;
  EXPECT_NE(message.find("10 classes"), std::string::npos) << message;
  EXPECT_NE(message.find("end the spec with fc10"), std::string::npos) << message;
  EXPECT_THROW(Net(parse_model_spec("fc7", 10), {0, 1, 4, 4}, 10), ShapeError);
  // A model whose output is not one value per class.
  const std::string spatial = error_of("conv10k3", {0, 1, 8, 8}, 10);
  EXPECT_NE(spatial.find("end the spec with fc10"), std::string::npos) << spatial;
}

TEST(Net, LayersThatDoNotFitAreShapeErrors) {
  EXPECT_THROW(Net(parse_model_spec("conv8k5-pool2-conv8k5-fc10", 10), {0, 1, 8, 8}, 10), ShapeError);
  EXPECT_THROW(Net(parse_model_spec("pool4-pool4-fc10", 10), {0, 1, 8, 8}, 10), ShapeError);
  EXPECT_THROW(Net(parse_model_spec("fc10", 10), {0, 0, 8, 8}, 10), ShapeError);
  Net net(parse_model_spec("fc10", 10), {0, 1, 4, 4}, 10);
  ForwardContext ctx;
  EXPECT_THROW(net.forward(Tensor({2, 1, 5, 5}), ctx), ShapeError);
  EXPECT_THROW(net.backward(Tensor({2, 10, 1, 1})), Error) << "backward before forward";
}

TEST(Net, DropConnectGoesToTheNextFc) {
  Net net(parse_model_spec("fc8-relu-dc0.25-relu-fc3", 3), {0, 2, 2, 2}, 3);
  ASSERT_EQ(net.layer_count(), 5u);
  auto* first = dynamic_cast<Dense*>(&net.layer(0));
  auto* last = dynamic_cast<Dense*>(&net.layer(4));
  ASSERT_TRUE(first && last);
  EXPECT_EQ(first->dropconnect(), 0.0);
  EXPECT_EQ(last->dropconnect(), 0.25);
}

TEST(Net, StochasticDepthDecaysLinearly) {
  Net net(parse_model_spec("conv4k3p1-res4-res4-res8s2-res8-gap-fc2-sd0.6", 2), {0, 1, 8, 8}, 2);
  std::vector<double> survival;
  for (std::size_t i = 0; i < net.layer_count(); ++i)
    if (auto* res = dynamic_cast<Residual*>(&net.layer(i))) survival.push_back(res->survival());
  ASSERT_EQ(survival.size(), 4u);
  // p_l = 1 - (l / L)(1 - p_L), l = 1..4, p_L = 0.6.
  const double expected[] = {0.9, 0.8, 0.7, 0.6};
  for (int l = 0; l < 4; ++l) EXPECT_NEAR(survival[l], expected[l], 1e-12) << "block " << l + 1;
  // Without sd every block survives.
  Net plain(parse_model_spec("res4-gap-fc2", 2), {0, 1, 8, 8}, 2);
  EXPECT_EQ(dynamic_cast<Residual&>(plain.layer(0)).survival(), 1.0);
}

TEST(Net, ParameterNamesAreUniqueAndPrefixedByLayer) {
  Net net(parse_model_spec("resnet-mini", 10), {0, 3, 16, 16}, 10);
  std::set<std::string> names;
  for (Param* p : net.params()) {
    EXPECT_TRUE(names.insert(p->name).second) << "duplicate " << p->name;
    const auto dot = p->name.find('.');
    ASSERT_NE(dot, std::string::npos) << p->name;
    const int index = std::stoi(p->name.substr(0, dot));
    EXPECT_LT(static_cast<std::size_t>(index), net.layer_count()) << p->name;
  }
  // Stable: asking again gives the same names.
  std::set<std::string> again;
  for (Param* p : net.params()) again.insert(p->name);
  EXPECT_EQ(names, again);
  EXPECT_FALSE(net.state().empty()) << "batch-norm statistics";
}

TEST(Net, InitializeIsAFunctionOfTheSeed) {
  const ModelSpec spec = parse_model_spec("cnn-small", 10);
  Net a(spec, {0, 1, 12, 12}, 10);
  Net b(spec, {0, 1, 12, 12}, 10);
  Net c(spec, {0, 1, 12, 12}, 10);
  a.initialize(7);
  b.initialize(7);
  c.initialize(8);
  const auto pa = a.params();
  const auto pb = b.params();
  const auto pc = c.params();
  ASSERT_EQ(pa.size(), pb.size());
  bool differs = false;
  for (std::size_t i = 0; i < pa.size(); ++i) {
    EXPECT_EQ(pa[i]->value.values(), pb[i]->value.values()) << pa[i]->name;
    differs |= pa[i]->value.values() != pc[i]->value.values();
  }
  EXPECT_TRUE(differs);
}

/// loss = sum(logits .* r): its gradient with respect to the logits is r.
double loss_of(Net& net, const Tensor& x, const Tensor& r) {
  const Tensor& y = net.forward(x, ForwardContext{});
  double loss = 0;
  for (std::size_t i = 0; i < y.size(); ++i) loss += static_cast<double>(y[i]) * r[i];
  return loss;
}

TEST(Net, BackwardMatchesCentralDifferences) {
  // Smooth layers only, so that finite differences are meaningful; this checks the network's
  // plumbing (which tensor goes to which layer, gradient buffers reused across layers), the
  // layers themselves are checked one by one elsewhere.
  Net net(parse_model_spec("conv3k3p1-tanh-avgpool2-fc6-tanh-fc5-tanh-fc4", 4), {0, 2, 4, 4}, 4);
  net.initialize(3);
  const Tensor x = test::random_tensor({3, 2, 4, 4}, 11);
  const Tensor r = test::random_tensor({3, 4, 1, 1}, 12);
  net.zero_grad();
  loss_of(net, x, r);
  net.backward(r);
  const double eps = 1e-2;
  double worst = 0;
  for (Param* p : net.params()) {
    for (std::size_t i = 0; i < p->value.size(); i += 3) {
      const float saved = p->value[i];
      p->value[i] = saved + static_cast<float>(eps);
      const double plus = loss_of(net, x, r);
      p->value[i] = saved - static_cast<float>(eps);
      const double minus = loss_of(net, x, r);
      p->value[i] = saved;
      const double numeric = (plus - minus) / (2 * eps);
      const double error = std::abs(numeric - p->grad[i]) / std::max(1e-2, std::abs(numeric) + std::abs(p->grad[i]));
      worst = std::max(worst, error);
      EXPECT_LT(error, 2e-2) << p->name << "[" << i << "]: numeric " << numeric << ", backward " << p->grad[i];
    }
  }
  RecordProperty("worst_relative_error", std::to_string(worst));
  // Gradients add up until zero_grad.
  const float before = net.params()[0]->grad[0];
  loss_of(net, x, r);
  net.backward(r);
  EXPECT_FLOAT_EQ(net.params()[0]->grad[0], 2 * before);
  net.zero_grad();
  EXPECT_EQ(net.params()[0]->grad[0], 0.0f);
}

// "bn-relu" runs as one pass (the batch norm applies the ReLU, the ReLU layer passes its input
// through): the network's logits and gradients are those of the same layers run one by one.
TEST(Net, FusedBatchNormReluGivesTheLayersResults) {
  const ModelSpec spec = parse_model_spec("conv4k3p1-bn-relu-fc3", 3);
  Net net(spec, {0, 2, 5, 5}, 3);
  net.initialize(7);
  std::vector<LayerPtr> layers;
  Shape shape{1, 2, 5, 5};
  for (const auto& token : spec.layers) {
    layers.push_back(make_layer(token, shape));
    shape = layers.back()->output_shape(shape);
  }
  for (std::size_t i = 0; i < layers.size(); ++i) {
    auto mine = layers[i]->params(), theirs = net.layer(i).params();
    ASSERT_EQ(mine.size(), theirs.size());
    for (std::size_t k = 0; k < mine.size(); ++k) {
      mine[k]->value = theirs[k]->value;
      mine[k]->grad = Tensor(theirs[k]->value.shape());
    }
  }
  const Tensor x = test::random_tensor({6, 2, 5, 5}, 3), dlogits = test::random_tensor({6, 3, 1, 1}, 4);
  ForwardContext ctx{Mode::train, 1, 0, 0, nullptr};
  std::vector<Tensor> outputs(layers.size()), gradients(layers.size());
  const Tensor* in = &x;
  for (std::size_t i = 0; i < layers.size(); ++i) {
    ctx.layer_index = static_cast<int>(i);
    layers[i]->forward(*in, outputs[i], ctx);
    in = &outputs[i];
  }
  net.zero_grad();
  const Tensor& logits = net.forward(x, {Mode::train, 1, 0, 0, nullptr});
  ASSERT_EQ(logits.size(), outputs.back().size());
  for (std::size_t i = 0; i < logits.size(); ++i) EXPECT_EQ(logits[i], outputs.back()[i]) << i;
  for (std::size_t i = layers.size(); i-- > 0;)
    layers[i]->backward(i == 0 ? x : outputs[i - 1], outputs[i], i + 1 == layers.size() ? dlogits : gradients[i + 1],
                        gradients[i]);
  net.backward(dlogits);
  for (std::size_t i = 0; i < layers.size(); ++i) {
    auto mine = layers[i]->params(), theirs = net.layer(i).params();
    for (std::size_t k = 0; k < mine.size(); ++k)
      for (std::size_t j = 0; j < mine[k]->grad.size(); ++j)
        EXPECT_NEAR(theirs[k]->grad[j], mine[k]->grad[j], 1e-5) << theirs[k]->name << "[" << j << "]";
  }
}

TEST(Net, CheckpointRestoresTheSameOutputs) {
  test::TempDir dir;
  const ModelSpec spec = parse_model_spec("cnn-small", 10);
  Net a(spec, {0, 1, 12, 12}, 10);
  a.initialize(1);
  const Tensor x = test::random_tensor({4, 1, 12, 12}, 5);
  ForwardContext train;
  train.mode = Mode::train;
  a.forward(x, train);  // moves the batch-norm running statistics away from their start
  Checkpoint saved;
  saved.epoch = 3;
  store_net(a, saved);
  EXPECT_EQ(saved.model_spec, print_model_spec(spec));
  EXPECT_EQ(saved.classes, 10);
  EXPECT_EQ(saved.input.h, 12);
  EXPECT_EQ(saved.params.size(), a.params().size());
  EXPECT_EQ(saved.state.size(), a.state().size());
  const auto path = (dir.path() / "a.ckpt").string();
  save_checkpoint(path, saved);

  const Checkpoint loaded = load_checkpoint(path);
  Net b(parse_model_spec(loaded.model_spec, loaded.classes), loaded.input, loaded.classes);
  b.initialize(2);
  restore_net(b, loaded);
  const Tensor ya = a.forward(x, ForwardContext{});
  const Tensor yb = b.forward(x, ForwardContext{});
  EXPECT_EQ(ya.values(), yb.values());
}

TEST(Net, RestoreMismatchNamesTheTensorAndShapes) {
  Net big(parse_model_spec("conv32k3p1-relu-gap-fc10", 10), {0, 1, 8, 8}, 10);
  Net small(parse_model_spec("conv16k3p1-relu-gap-fc10", 10), {0, 1, 8, 8}, 10);
  big.initialize(1);
  small.initialize(1);
  Checkpoint c;
  store_net(big, c);
  const auto before = small.params()[0]->value.values();
  try {
    restore_net(small, c);
    ADD_FAILURE() << "restored a mismatched checkpoint";
  } catch (const ShapeError& e) {
    const std::string message = e.what();
    const Shape big_shape = big.params()[0]->value.shape();
    const Shape small_shape = small.params()[0]->value.shape();
    const auto text = [](const Shape& s) {
      return std::to_string(s.n) + "x" + std::to_string(s.c) + "x" + std::to_string(s.h) + "x" + std::to_string(s.w);
    };
    EXPECT_NE(message.find("checkpoint has 0.conv.weight " + text(big_shape) + " but the model has " + text(small_shape)),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("conv32k3p1"), std::string::npos) << "names the saved model: " << message;
  }
  EXPECT_EQ(small.params()[0]->value.values(), before) << "nothing copied on failure";

  // Missing and extra tensors.
  Checkpoint missing;
  store_net(small, missing);
  missing.params.erase(missing.params.begin());
  EXPECT_THROW(restore_net(small, missing), ShapeError);
  Checkpoint extra;
  store_net(small, extra);
  extra.params["9.fc.weight"] = Tensor({1, 2, 3, 1});
  EXPECT_THROW(restore_net(small, extra), ShapeError);
}

// Fine-tuning: frozen layers run in test mode (batch norm keeps its running statistics), get
// no gradient, and only the rest is listed as trainable.
TEST(Net, FreezeKeepsTheFirstLayersFixed) {
  Net net(parse_model_spec("conv4k3p1-bn-relu-res4b0-drop0.5-fc3", 3), {0, 2, 6, 6}, 3);
  net.initialize(4);
  net.freeze(2);
  EXPECT_EQ(net.frozen(), 2u);
  EXPECT_FALSE(net.layer(2).input_gradient()) << "nothing below layer 2 needs its gradient";
  EXPECT_TRUE(net.layer(3).input_gradient());
  std::vector<std::string> trainable;
  for (Param* p : net.trainable_params()) trainable.push_back(p->name);
  std::vector<std::string> expected;
  for (Param* p : net.params())
    if (p->name.rfind("0.", 0) != 0 && p->name.rfind("1.", 0) != 0) expected.push_back(p->name);
  EXPECT_EQ(trainable, expected);
  EXPECT_EQ(net.params().size(), trainable.size() + 4) << "conv weight and bias, bn gamma and beta";

  const std::vector<float> mean = dynamic_cast<BatchNorm&>(net.layer(1)).running_mean().values();
  const std::vector<float> var = dynamic_cast<BatchNorm&>(net.layer(1)).running_var().values();
  const Tensor x = test::random_tensor({4, 2, 6, 6}, 5);
  ForwardContext train;
  train.mode = Mode::train;
  net.zero_grad();
  const Tensor logits = net.forward(x, train);
  net.backward(Tensor(logits.shape(), 0.25f));
  EXPECT_EQ(dynamic_cast<BatchNorm&>(net.layer(1)).running_mean().values(), mean);
  EXPECT_EQ(dynamic_cast<BatchNorm&>(net.layer(1)).running_var().values(), var);
  for (Param* p : net.params()) {
    double sum = 0;
    for (float g : p->grad.values()) sum += std::abs(g);
    if (p->name.rfind("0.", 0) == 0 || p->name.rfind("1.", 0) == 0) {
      EXPECT_EQ(sum, 0.0) << p->name << " is frozen";
    } else if (p->name.rfind("5.", 0) == 0) {
      EXPECT_GT(sum, 0.0) << p->name;
    }
  }
  // The frozen batch norm normalises with its running statistics in training too: with only
  // deterministic layers after it, training and test mode give the same logits.
  Net head_only(parse_model_spec("conv4k3p1-bn-relu-fc3", 3), {0, 2, 6, 6}, 3);
  head_only.initialize(4);
  const std::vector<float> trained = head_only.forward(x, train).values();
  EXPECT_NE(trained, head_only.forward(x, ForwardContext{}).values()) << "unfrozen: batch statistics";
  head_only.freeze(2);
  EXPECT_EQ(head_only.forward(x, train).values(), head_only.forward(x, ForwardContext{}).values());

  // Unfreezing gives every gradient back.
  net.freeze(0);
  EXPECT_EQ(net.trainable_params().size(), net.params().size());
  EXPECT_FALSE(net.layer(0).input_gradient());
  EXPECT_TRUE(net.layer(2).input_gradient());
}

TEST(Net, FreezeLeavesTheLastLayerTrainable) {
  Net net(parse_model_spec("fc8-relu-fc3", 3), {0, 1, 4, 4}, 3);
  test::expect_throws_with([&] { net.freeze(3); }, "cannot freeze 3 layers of a model with 3 layers");
  test::expect_throws_with([&] { net.freeze(3); }, "freeze 0 to 2 layers");
  test::expect_throws_with([&] { net.freeze(-1); }, "cannot freeze -1 layers");
  EXPECT_THROW(net.freeze(7), ConfigError);
  EXPECT_EQ(net.frozen(), 0u) << "a rejected freeze changes nothing";
  net.freeze(2);
  EXPECT_EQ(net.trainable_params().size(), 2u);
}

}  // namespace
}  // namespace augflow::model
