// Layers: the numeric gradient check of every layer kind (a loop over the registry's kinds),
// forward values worked out by hand, dropout and stochastic-depth statistics, thread-count
// independence, and the "backward adds into gradients" contract.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <tbb/task_arena.h>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "model/batch_norm.hpp"
#include "model/config.hpp"
#include "model/conv.hpp"
#include "model/dense.hpp"
#include "model/dropout.hpp"
#include "model/grad_check.hpp"
#include "model/net.hpp"
#include "model/pool.hpp"
#include "model/residual.hpp"
#include "tests/fixtures.hpp"

namespace augflow::model {
namespace {

/// Every kind of model/config.hpp's grammar (keep in step with make_layer).
const std::vector<std::string> kAllKinds = {"conv", "fc",   "bn",      "relu", "lrelu",
                                            "tanh", "pool", "avgpool", "gap",  "flatten",
                                            "drop", "dc",   "res"};

enum class Input { uniform, away_from_zero, distinct };

struct Case {
  std::string name;
  LayerSpec spec;
  Shape in;
  Mode mode = Mode::test;
  Input input = Input::uniform;
  double step = 1e-2;
  /// Residual blocks: more float operations between input and loss, so a larger noise floor.
  double abs_floor = 1e-2;
};

std::vector<Case> grad_cases() {
  using A = std::map<std::string, double>;
  return {
      {"fc", {"fc", A{{"out", 4}}}, {3, 2, 3, 3}},
      {"fc_dropconnect_train", {"fc", A{{"out", 3}, {"dropconnect", 0.4}}}, {3, 5, 1, 1}, Mode::train},
      {"conv_k3p1", {"conv", A{{"out", 3}, {"k", 3}, {"p", 1}}}, {2, 2, 5, 5}},
      {"conv_k3s2p1", {"conv", A{{"out", 2}, {"k", 3}, {"s", 2}, {"p", 1}}}, {2, 3, 6, 6}},
      {"conv_k2s2_remainder", {"conv", A{{"out", 2}, {"k", 2}, {"s", 2}}}, {2, 2, 5, 5}},
      {"conv_k3p0", {"conv", A{{"out", 2}, {"k", 3}}}, {2, 2, 5, 6}},
      {"conv_k1", {"conv", A{{"out", 3}, {"k", 1}}}, {2, 2, 4, 4}},
      {"bn_conv_train", {"bn", {}}, {3, 2, 5, 5}, Mode::train},
      {"bn_conv_test", {"bn", {}}, {2, 3, 4, 4}, Mode::test},
      {"bn_fc_train", {"bn", {}}, {4, 5, 1, 1}, Mode::train},
      {"relu", {"relu", {}}, {2, 3, 5, 5}, Mode::test, Input::away_from_zero},
      {"lrelu", {"lrelu", A{{"a", 0.1}}}, {2, 3, 5, 5}, Mode::test, Input::away_from_zero},
      {"tanh", {"tanh", {}}, {2, 3, 5, 5}},
      {"pool", {"pool", A{{"k", 2}}}, {2, 2, 5, 5}, Mode::test, Input::distinct},
      // Overlapping and padded windows (torchvision's ResNet stem is pool3s2p1).
      {"pool3s2p1", {"pool", A{{"k", 3}, {"s", 2}, {"p", 1}}}, {2, 2, 6, 7}, Mode::test, Input::distinct},
      {"pool2s1", {"pool", A{{"k", 2}, {"s", 1}}}, {2, 2, 5, 5}, Mode::test, Input::distinct},
      {"pool3s2", {"pool", A{{"k", 3}, {"s", 2}}}, {2, 2, 7, 8}, Mode::test, Input::distinct},
      {"avgpool", {"avgpool", A{{"k", 2}}}, {2, 2, 5, 5}},
      {"gap", {"gap", {}}, {2, 3, 4, 5}},
      {"flatten", {"flatten", {}}, {2, 2, 3, 3}},
      {"drop_train", {"drop", A{{"p", 0.5}}}, {3, 2, 5, 5}, Mode::train},
      {"drop_test", {"drop", A{{"p", 0.5}}}, {2, 2, 3, 3}},
      {"dc", {"dc", A{{"p", 0.5}}}, {2, 4, 1, 1}, Mode::train},
      {"res_identity_train", {"res", A{{"out", 2}}}, {2, 2, 5, 5}, Mode::train, Input::uniform, 3e-3, 0.05},
      {"res_projection_train", {"res", A{{"out", 3}, {"s", 2}}}, {2, 2, 6, 6}, Mode::train, Input::uniform, 3e-3, 0.05},
      {"res_survival_train", {"res", A{{"out", 2}, {"survival", 0.5}}}, {3, 2, 5, 5}, Mode::train, Input::uniform, 3e-3, 0.05},
      {"res_survival_test", {"res", A{{"out", 2}, {"survival", 0.5}}}, {2, 2, 5, 5}, Mode::test, Input::uniform, 1e-3, 0.05},
      // Without batch norm (b0): convs with bias.
      {"res_b0_identity_train", {"res", A{{"out", 2}, {"bn", 0}}}, {2, 2, 5, 5}, Mode::train, Input::uniform, 1e-3, 0.05},
      {"res_b0_projection_train", {"res", A{{"out", 3}, {"s", 2}, {"bn", 0}}}, {2, 2, 6, 6}, Mode::train, Input::uniform, 3e-3, 0.05},
      {"res_b0_survival_test", {"res", A{{"out", 2}, {"bn", 0}, {"survival", 0.5}}}, {2, 2, 5, 5}, Mode::test, Input::uniform, 1e-3, 0.05},
  };
}

Tensor make_input(const Shape& shape, Input kind, std::uint64_t seed) {
  Tensor x(shape);
  Rng rng({seed, 1, 2}, 3);
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (kind == Input::uniform) {
      x[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
    } else if (kind == Input::away_from_zero) {
      const double magnitude = rng.uniform(0.2, 1.0);
      x[i] = static_cast<float>(rng.bernoulli(0.5) ? magnitude : -magnitude);
    } else {
      x[i] = static_cast<float>((static_cast<double>(i) - x.size() / 2.0) * 0.05);
    }
  }
  if (kind == Input::distinct) {  // a shuffle (Fisher-Yates): values stay 0.05 apart
    for (std::size_t i = x.size(); i > 1; --i)
      std::swap(x[i - 1], x[static_cast<std::size_t>(rng.uniform_int(0, static_cast<std::int64_t>(i) - 1))]);
  }
  return x;
}

LayerPtr build(const LayerSpec& spec, const Shape& in, std::uint64_t seed = 7) {
  LayerPtr layer = make_layer(spec, in);
  Rng rng({seed, 0, 0}, 11);
  layer->initialize(rng);
  // Non-trivial batch-norm parameters and running statistics, so that gamma, beta and the test
  // mode are really exercised.
  Rng perturb({seed, 0, 1}, 12);
  for (Param* p : layer->params())
    if (!p->regularized)
      for (float& v : p->value.storage()) v += static_cast<float>(perturb.uniform(-0.3, 0.3));
  for (Tensor* t : layer->state())
    for (float& v : t->storage()) v += static_cast<float>(perturb.uniform(0.0, 0.5));
  return layer;
}

ForwardContext train_context(std::uint64_t step = 3) {
  ForwardContext ctx;
  ctx.mode = Mode::train;
  ctx.seed = 99;
  ctx.step = step;
  ctx.layer_index = 2;
  return ctx;
}

ForwardContext context_for(Mode mode) {
  ForwardContext ctx = train_context();
  ctx.mode = mode;
  return ctx;
}

TEST(LayerRegistry, EveryKindIsBuiltAndGradientChecked) {
  std::set<std::string> covered;
  for (const Case& c : grad_cases()) covered.insert(c.spec.kind);
  for (const std::string& kind : kAllKinds) {
    EXPECT_TRUE(covered.count(kind)) << kind << " has no gradient-check case";
  }
  for (const Case& c : grad_cases()) {
    EXPECT_TRUE(std::count(kAllKinds.begin(), kAllKinds.end(), c.spec.kind)) << c.spec.kind;
  }
}

TEST(LayerRegistry, UnknownKindAndBadArgumentsAreSpecErrors) {
  EXPECT_THROW(make_layer({"lstm", {}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"drop", {{"p", 1.0}}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"drop", {{"p", -0.1}}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"dc", {{"p", 1.0}}}, {1, 3, 1, 1}), SpecError);
  EXPECT_THROW(make_layer({"conv", {{"out", 0}, {"k", 3}}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"conv", {{"out", 4}, {"k", 2.5}}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"conv", {{"out", 4}}}, {1, 3, 8, 8}), SpecError);  // k missing
  EXPECT_THROW(make_layer({"fc", {{"out", 4}, {"k", 3}}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"res", {{"out", 4}, {"survival", 0.0}}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"res", {{"out", 4}, {"survival", 1.5}}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"res", {{"out", 4}, {"bn", 2}}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"pool", {{"k", 2}, {"s", 0}}}, {1, 3, 8, 8}), SpecError);
  EXPECT_THROW(make_layer({"pool", {{"k", 2}, {"p", -1}}}, {1, 3, 8, 8}), SpecError);
  // PyTorch's rule: the padding is at most half the window; the message says how to fix it.
  test::expect_throws_with([] { make_layer({"pool", {{"k", 3}, {"s", 2}, {"p", 2}}}, {1, 3, 8, 8}); },
                   "pool3s2p2: the padding 2 is more than half the 3x3 window; at most 1");
  test::expect_throws_with([] { make_layer({"pool", {{"k", 1}, {"p", 1}}}, {1, 3, 8, 8}); }, "at most 0");
}

TEST(LayerRegistry, ShapeMismatchNamesTheToken) {
  try {
    make_layer({"conv", {{"out", 8}, {"k", 5}}}, {1, 3, 3, 3});
    FAIL() << "no ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("conv8k5"), std::string::npos) << e.what();
  }
  try {
    make_layer({"pool", {{"k", 4}}}, {1, 3, 2, 2});
    FAIL() << "no ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("pool4"), std::string::npos) << e.what();
  }
  try {
    make_layer({"res", {{"out", 8}, {"s", 2}}}, {1, 3, 0, 0});
    FAIL() << "no ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("res"), std::string::npos) << e.what();
  }
  LayerPtr fc = make_layer({"fc", {{"out", 10}}}, {1, 3, 4, 4});
  EXPECT_THROW(fc->output_shape({2, 3, 4, 5}), ShapeError);
}

TEST(LayerRegistry, SpecTokensAndShapes) {
  const std::vector<std::pair<LayerSpec, std::string>> tokens = {
      {{"conv", {{"out", 32}, {"k", 3}, {"p", 1}}}, "conv32k3p1"},
      {{"conv", {{"out", 8}, {"k", 3}, {"s", 2}, {"p", 1}}}, "conv8k3s2p1"},
      {{"fc", {{"out", 10}}}, "fc10"},
      {{"bn", {}}, "bn"},
      {{"relu", {}}, "relu"},
      {{"lrelu", {}}, "lrelu"},
      {{"lrelu", {{"a", 0.2}}}, "lrelu0.2"},
      {{"tanh", {}}, "tanh"},
      {{"pool", {{"k", 2}}}, "pool2"},
      {{"avgpool", {{"k", 2}}}, "avgpool2"},
      {{"gap", {}}, "gap"},
      {{"flatten", {}}, "flatten"},
      {{"drop", {{"p", 0.5}}}, "drop0.5"},
      {{"dc", {{"p", 0.25}}}, "dc0.25"},
      {{"res", {{"out", 16}, {"s", 2}}}, "res16s2"},
      {{"res", {{"out", 16}, {"s", 2}, {"bn", 0}}}, "res16s2b0"},
      {{"res", {{"out", 16}, {"bn", 1}}}, "res16"},
      {{"pool", {{"k", 2}, {"s", 2}, {"p", 0}}}, "pool2"},
      {{"pool", {{"k", 2}, {"s", 1}}}, "pool2s1"},
      {{"pool", {{"k", 3}, {"s", 2}, {"p", 1}}}, "pool3s2p1"},
      {{"pool", {{"k", 3}, {"p", 1}}}, "pool3p1"},
  };
  for (const auto& [spec, token] : tokens) EXPECT_EQ(make_layer(spec, {1, 4, 8, 8})->spec(), token);
  for (const Case& c : grad_cases()) {
    LayerPtr layer = build(c.spec, c.in);
    Tensor x = make_input(c.in, c.input, 5), y;
    layer->forward(x, y, context_for(c.mode));
    EXPECT_EQ(y.shape(), layer->output_shape(c.in)) << c.name;
  }
}

TEST(GradCheck, EveryLayerKind) {
  for (const Case& c : grad_cases()) {
    SCOPED_TRACE(c.name);
    LayerPtr layer = build(c.spec, c.in);
    const Tensor x = make_input(c.in, c.input, 5);
    GradCheckOptions opt;
    opt.step = c.step;
    opt.abs_floor = c.abs_floor;
    const GradCheckResult r = check_gradients(*layer, x, context_for(c.mode), opt);
    EXPECT_TRUE(r.ok()) << c.name << ": " << r.report();
    // Kinks (ReLU inside a residual block) may excuse a few values, never many.
    EXPECT_LE(r.skipped * 20, r.checked) << c.name << ": " << r.report();
    if (std::getenv("AUGFLOW_GRAD_REPORT")) std::printf("%-24s %s\n", c.name.c_str(), r.report().c_str());
  }
}

TEST(GradCheck, CatchesAWrongGradient) {
  // A layer whose backward is off by 10%: the checker must notice.
  struct Wrong : Layer {
    std::string spec() const override { return "wrong"; }
    Shape output_shape(const Shape& in) const override { return in; }
    void forward(const Tensor& x, Tensor& y, const ForwardContext&) override {
      y = x;
      for (float& v : y.storage()) v = v * v;
    }
    void backward(const Tensor& x, const Tensor&, const Tensor& dy, Tensor& dx) override {
      dx = x;
      for (std::size_t i = 0; i < dx.size(); ++i) dx[i] = 2.2f * x[i] * dy[i];
    }
  } wrong;
  const GradCheckResult r = check_gradients(wrong, make_input({2, 2, 3, 3}, Input::away_from_zero, 1),
                                            ForwardContext{});
  EXPECT_FALSE(r.ok());
  EXPECT_GT(r.failed, 0u);
}

TEST(GradCheck, BackwardAddsIntoParamGradients) {
  for (const Case& c : grad_cases()) {
    LayerPtr layer = build(c.spec, c.in);
    if (layer->params().empty()) continue;
    SCOPED_TRACE(c.name);
    const Tensor x = make_input(c.in, c.input, 5);
    Tensor y, dx1, dx2;
    const ForwardContext ctx = context_for(c.mode);
    layer->forward(x, y, ctx);
    const Tensor dy = make_input(y.shape(), Input::uniform, 9);
    for (Param* p : layer->params()) p->grad.fill(0.0f);
    layer->backward(x, y, dy, dx1);
    std::vector<std::vector<float>> once;
    for (Param* p : layer->params()) once.push_back(p->grad.values());
    dx2.resize(x.shape());
    dx2.fill(123.0f);  // backward assigns dx: stale values must not leak
    layer->backward(x, y, dy, dx2);
    EXPECT_EQ(dx1.values(), dx2.values());
    const auto params = layer->params();
    for (std::size_t k = 0; k < params.size(); ++k)
      for (std::size_t i = 0; i < once[k].size(); ++i)
        ASSERT_NEAR(params[k]->grad[i], 2.0f * once[k][i], 1e-5f * (1 + std::abs(once[k][i])))
            << params[k]->name << "[" << i << "]";
  }
}

// ---- forward values worked out by hand ----

TEST(Dense, ForwardByHand) {
  Dense fc({1, 3, 1, 1}, 2);
  // W = [[1, 0, -1], [2, 1, 0]], b = [0.5, -1], x = [1, 2, 3]:
  // y = [1 - 3 + 0.5, 2 + 2 - 1] = [-1.5, 3].
  const float w[] = {1, 0, -1, 2, 1, 0};
  std::copy(w, w + 6, fc.weight().value.data());
  fc.bias().value[0] = 0.5f;
  fc.bias().value[1] = -1.0f;
  Tensor x({2, 3, 1, 1}), y;
  const float xs[] = {1, 2, 3, 0, 0, 1};  // second sample: y = [-1 + 0.5, 0 - 1]
  std::copy(xs, xs + 6, x.data());
  fc.forward(x, y, {});
  ASSERT_EQ(y.shape(), (Shape{2, 2, 1, 1}));
  EXPECT_FLOAT_EQ(y[0], -1.5f);
  EXPECT_FLOAT_EQ(y[1], 3.0f);
  EXPECT_FLOAT_EQ(y[2], -0.5f);
  EXPECT_FLOAT_EQ(y[3], -1.0f);
  EXPECT_DOUBLE_EQ(fc.flops_per_sample({1, 3, 1, 1}), 6.0);
}

TEST(Dense, UniformInitAndDropConnectMask) {
  Dense fc({1, 200, 1, 1}, 100, 0.5);
  Rng rng({1, 0, 0}, 0);
  fc.initialize(rng);
  double sq = 0;
  for (float v : fc.weight().value.values()) sq += v * v;
  EXPECT_NEAR(sq / fc.weight().value.size(), 1.0 / 600, 0.1 / 600);  // U(+-1/sqrt(in)): var 1 / (3 in)
  const float bound = 1.0f / std::sqrt(200.0f);
  for (float v : fc.weight().value.values()) EXPECT_LE(std::fabs(v), bound);
  bool bias_set = false;
  for (float v : fc.bias().value.values()) {
    EXPECT_LE(std::fabs(v), bound);
    bias_set |= v != 0.0f;
  }
  EXPECT_TRUE(bias_set) << "biases are drawn too, as in PyTorch";
  // Train: a masked W (about half the weights zeroed, the rest doubled); test: W unchanged.
  fc.bias().value.fill(0.0f);
  Tensor x({1, 200, 1, 1}, 0.0f), y;
  x[17] = 1.0f;  // y = column 17 of the effective W (+ b = 0)
  fc.forward(x, y, train_context());
  int zeroed = 0;
  for (int j = 0; j < 100; ++j) {
    const float w = fc.weight().value[j * 200 + 17];
    if (y[j] == 0.0f) ++zeroed;
    else EXPECT_FLOAT_EQ(y[j], 2.0f * w);
  }
  EXPECT_GT(zeroed, 30);
  EXPECT_LT(zeroed, 70);
  Tensor y_again;
  fc.forward(x, y_again, train_context());
  EXPECT_EQ(y.values(), y_again.values());  // the mask is a function of ctx
  fc.forward(x, y_again, train_context(4));
  EXPECT_NE(y.values(), y_again.values());  // a new step, a new mask
  fc.forward(x, y, {});
  for (int j = 0; j < 100; ++j) EXPECT_FLOAT_EQ(y[j], fc.weight().value[j * 200 + 17]);
}

Conv2d laplacian_conv(int stride) {
  Conv2d conv({1, 1, 3, 3}, 1, 3, stride, 1);
  const float k[] = {0, 1, 0, 1, -4, 1, 0, 1, 0};
  std::copy(k, k + 9, conv.weight().value.data());
  conv.bias().value[0] = 1.0f;
  return conv;
}

TEST(Conv, ForwardByHand) {
  // x = [[1,2,3],[4,5,6],[7,8,9]], the Laplacian kernel [[0,1,0],[1,-4,1],[0,1,0]], padding 1,
  // bias 1: y(0,0) = 2 + 4 - 4*1 + 1 = 3, y(1,1) = 2 + 4 + 6 + 8 - 20 + 1 = 1, ...
  Tensor x({1, 1, 3, 3}), y;
  std::iota(x.storage().begin(), x.storage().end(), 1.0f);
  Conv2d conv = laplacian_conv(1);
  conv.forward(x, y, {});
  ASSERT_EQ(y.shape(), (Shape{1, 1, 3, 3}));
  const std::vector<float> expected = {3, 2, -3, -2, 1, -6, -15, -10, -21};
  EXPECT_EQ(y.values(), expected);
  // Stride 2 keeps the corners.
  Conv2d strided = laplacian_conv(2);
  strided.forward(x, y, {});
  ASSERT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.values(), (std::vector<float>{3, -3, -15, -21}));
  EXPECT_DOUBLE_EQ(conv.flops_per_sample({1, 1, 3, 3}), 9.0 * 9.0);
}

TEST(Conv, FlopsAndMultiChannel) {
  // Two input channels, two output channels, no padding on a 3x3 input: one output pixel each.
  Conv2d conv({1, 2, 3, 3}, 2, 3);
  for (int i = 0; i < 18; ++i) conv.weight().value[i] = 1.0f;       // output 0: sum of all
  for (int i = 18; i < 36; ++i) conv.weight().value[i] = i < 27 ? 1.0f : -1.0f;  // ch0 - ch1
  Tensor x({1, 2, 3, 3}), y;
  for (int i = 0; i < 9; ++i) {
    x[i] = static_cast<float>(i + 1);  // sum 45
    x[9 + i] = 2.0f;                   // sum 18
  }
  conv.forward(x, y, {});
  ASSERT_EQ(y.shape(), (Shape{1, 2, 1, 1}));
  EXPECT_FLOAT_EQ(y[0], 63.0f);
  EXPECT_FLOAT_EQ(y[1], 27.0f);
  EXPECT_DOUBLE_EQ(conv.flops_per_sample({1, 2, 3, 3}), 2.0 * 1 * 18);
  EXPECT_DOUBLE_EQ(make_layer({"conv", {{"out", 4}, {"k", 3}, {"p", 1}}}, {1, 2, 5, 5})->flops_per_sample({1, 2, 5, 5}),
                   4.0 * 25 * 18);
}

template <typename Body>
void in_arena(int threads, Body&& body) {
  tbb::task_arena arena(threads);
  arena.execute(body);
}

TEST(Conv, BitIdenticalWithOneOrTwoThreads) {
  const Shape in{19, 3, 16, 16};  // 19: uneven chunks
  const Tensor x = make_input(in, Input::uniform, 3);
  std::vector<float> out[2], dx[2], dw[2], db[2];
  for (int t = 0; t < 2; ++t) {
    in_arena(t + 1, [&] {
      LayerPtr conv = build({"conv", {{"out", 8}, {"k", 3}, {"p", 1}}}, in);
      Tensor y, d;
      conv->forward(x, y, {});
      const Tensor dy = make_input(y.shape(), Input::uniform, 4);
      conv->backward(x, y, dy, d);
      out[t] = y.values();
      dx[t] = d.values();
      dw[t] = conv->params()[0]->grad.values();
      db[t] = conv->params()[1]->grad.values();
    });
  }
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(dx[0], dx[1]);
  EXPECT_EQ(dw[0], dw[1]);
  EXPECT_EQ(db[0], db[1]);
}

TEST(Dense, BitIdenticalWithOneOrTwoThreads) {
  const Shape in{37, 64, 4, 4};
  const Tensor x = make_input(in, Input::uniform, 3);
  std::vector<float> out[2], dx[2], dw[2];
  for (int t = 0; t < 2; ++t) {
    in_arena(t + 1, [&] {
      LayerPtr fc = build({"fc", {{"out", 50}, {"dropconnect", 0.3}}}, in);
      Tensor y, d;
      fc->forward(x, y, train_context());
      const Tensor dy = make_input(y.shape(), Input::uniform, 4);
      fc->backward(x, y, dy, d);
      out[t] = y.values();
      dx[t] = d.values();
      dw[t] = fc->params()[0]->grad.values();
    });
  }
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(dx[0], dx[1]);
  EXPECT_EQ(dw[0], dw[1]);
}

// Net turns the input gradient off for its first layer: fc and conv then skip dx (a third of
// a two-layer net's step) and must give the same weight gradients, bit for bit.
TEST(FirstLayer, SkippingTheInputGradientKeepsTheWeightGradients) {
  const Shape in{9, 3, 8, 8};
  const Tensor x = make_input(in, Input::uniform, 3);
  // Residual blocks too: a partly frozen network asks its first trained layer for no dx.
  for (const LayerSpec& spec : {LayerSpec{"fc", {{"out", 6}}}, LayerSpec{"conv", {{"out", 4}, {"k", 3}, {"p", 1}}},
                                LayerSpec{"conv", {{"out", 4}, {"k", 1}}}, LayerSpec{"res", {{"out", 3}}},
                                LayerSpec{"res", {{"out", 4}, {"s", 2}}}, LayerSpec{"res", {{"out", 4}, {"s", 2}, {"bn", 0}}}}) {
    std::vector<std::vector<float>> grads[2];
    Tensor dx[2];
    for (int skip = 0; skip < 2; ++skip) {
      LayerPtr layer = build(spec, in);
      layer->set_input_gradient(skip == 0);
      Tensor y;
      layer->forward(x, y, {});
      const Tensor dy = make_input(y.shape(), Input::uniform, 4);
      layer->backward(x, y, dy, dx[skip]);
      for (Param* p : layer->params()) grads[skip].push_back(p->grad.values());
    }
    EXPECT_EQ(grads[0], grads[1]) << spec.kind;
    EXPECT_EQ(dx[0].size(), x.size()) << spec.kind;
    EXPECT_EQ(dx[1].size(), 0u) << spec.kind << ": dx was written although it was not needed";
  }
  // And Net asks for it nowhere but below its first layer.
  Net net(parse_model_spec("fc8-relu-fc3", 3), Shape{0, 1, 4, 4}, 3);
  EXPECT_FALSE(net.layer(0).input_gradient());
  EXPECT_TRUE(net.layer(net.layer_count() - 1).input_gradient());
}

TEST(Residual, BitIdenticalWithOneOrTwoThreads) {
  const Shape in{10, 4, 8, 8};
  const Tensor x = make_input(in, Input::uniform, 3);
  std::vector<float> out[2], dx[2];
  for (int t = 0; t < 2; ++t) {
    in_arena(t + 1, [&] {
      LayerPtr res = build({"res", {{"out", 8}, {"s", 2}, {"survival", 0.7}}}, in);
      Tensor y, d;
      res->forward(x, y, train_context());
      res->backward(x, y, make_input(y.shape(), Input::uniform, 4), d);
      out[t] = y.values();
      dx[t] = d.values();
    });
  }
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(dx[0], dx[1]);
}

TEST(Pool, MaxAndAverageByHand) {
  // 4x5 input (the last column is outside every 2x2 window):
  //   1  2  3  4  9
  //   5  6  7  8  9
  //   9 10 11 12  9
  //  13 14 15 16  9
  Tensor x({1, 1, 4, 5}), y, dx;
  const float v[] = {1, 2, 3, 4, 9, 5, 6, 7, 8, 9, 9, 10, 11, 12, 9, 13, 14, 15, 16, 9};
  std::copy(v, v + 20, x.data());
  LayerPtr pool = make_layer({"pool", {{"k", 2}}}, {1, 1, 4, 5});
  pool->forward(x, y, {});
  ASSERT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.values(), (std::vector<float>{6, 8, 14, 16}));
  Tensor dy({1, 1, 2, 2});
  dy.storage() = {1, 2, 3, 4};
  pool->backward(x, y, dy, dx);
  std::vector<float> expected(20, 0.0f);
  expected[6] = 1;  // the 6
  expected[8] = 2;  // the 8
  expected[16] = 3;
  expected[18] = 4;
  EXPECT_EQ(dx.values(), expected);

  LayerPtr avg = make_layer({"avgpool", {{"k", 2}}}, {1, 1, 4, 5});
  avg->forward(x, y, {});
  EXPECT_EQ(y.values(), (std::vector<float>{3.5f, 5.5f, 11.5f, 13.5f}));
  avg->backward(x, y, dy, dx);
  EXPECT_FLOAT_EQ(dx[0], 0.25f);
  EXPECT_FLOAT_EQ(dx[19], 0.0f);
  EXPECT_FLOAT_EQ(dx[18], 1.0f);

  LayerPtr gap = make_layer({"gap", {}}, {1, 1, 4, 5});
  gap->forward(x, y, {});
  ASSERT_EQ(y.shape(), (Shape{1, 1, 1, 1}));
  EXPECT_FLOAT_EQ(y[0], 172.0f / 20.0f);
  LayerPtr flat = make_layer({"flatten", {}}, {1, 1, 4, 5});
  flat->forward(x, y, {});
  EXPECT_EQ(y.shape(), (Shape{1, 20, 1, 1}));
  EXPECT_EQ(y.values(), x.values());
}

TEST(Pool, TiedMaximaGiveTheGradientToTheFirstOnly) {
  // Every window holds one repeated value (ReLU outputs are often all 0): the gradient must go
  // to the window's first element in raster order, once, for the k = 2 kernel and the general one.
  for (int k : {2, 3}) {
    SCOPED_TRACE("pool" + std::to_string(k));
    const int side = 2 * k;
    Tensor x({1, 2, side, side}, 0.0f), y, dx;
    for (int i = 0; i < side * side; ++i) x[side * side + i] = -1.5f;  // channel 1: all equal too
    x[k + 1] = 7.0f;  // window (0, 1) of channel 0: a single maximum at offset (0, 1)
    LayerPtr pool = make_layer({"pool", {{"k", k}}}, {1, 2, side, side});
    pool->forward(x, y, {});
    Tensor dy(y.shape());
    for (std::size_t i = 0; i < dy.size(); ++i) dy[i] = static_cast<float>(i + 1);
    pool->backward(x, y, dy, dx);
    std::vector<float> expected(x.size(), 0.0f);
    for (int c = 0; c < 2; ++c)
      for (int oh = 0; oh < 2; ++oh)
        for (int ow = 0; ow < 2; ++ow) {
          const int first = (c * side + oh * k) * side + ow * k;
          expected[first] = dy[(c * 2 + oh) * 2 + ow];
        }
    expected[k] = 0.0f;
    expected[k + 1] = dy[1];
    EXPECT_EQ(dx.values(), expected);
  }
}

TEST(Pool, PaddedOverlappingByHand) {
  // pool3s2p1 on a 4x4 input: 2x2 outputs over the windows rows/columns {-1,0,1} and {1,2,3}
  // (-1 is padding). All inputs negative: a zero padding would win, -infinity never does.
  //   -1  -2  -3  -4
  //   -5  -6  -7  -8
  //   -9 -10 -11 -12
  //  -13 -14 -15 -16
  Tensor x({1, 1, 4, 4}), y, dx;
  for (int i = 0; i < 16; ++i) x[i] = -static_cast<float>(i + 1);
  LayerPtr pool = make_layer({"pool", {{"k", 3}, {"s", 2}, {"p", 1}}}, {1, 1, 4, 4});
  pool->forward(x, y, {});
  ASSERT_EQ(y.shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(y.values(), (std::vector<float>{-1, -2, -5, -6}));
  Tensor dy({1, 1, 2, 2});
  dy.storage() = {1, 2, 3, 4};
  pool->backward(x, y, dy, dx);
  std::vector<float> expected(16, 0.0f);
  expected[0] = 1;  // -1
  expected[1] = 2;  // -2
  expected[4] = 3;  // -5
  expected[5] = 4;  // -6
  EXPECT_EQ(dx.values(), expected);
  // The element at (1, 1) lies in all four windows: as their maximum it gets the sum of their
  // gradients.
  x[5] = 5.0f;
  pool->forward(x, y, {});
  EXPECT_EQ(y.values(), (std::vector<float>{5, 5, 5, 5}));
  pool->backward(x, y, dy, dx);
  expected.assign(16, 0.0f);
  expected[5] = 1 + 2 + 3 + 4;
  EXPECT_EQ(dx.values(), expected);
}

TEST(Pool, AsPyTorchMaxPool2d) {
  // torch.nn.MaxPool2d(3, 2, 1)(torch.arange(25.).reshape(1, 1, 5, 5)) is
  // [[6, 8, 9], [16, 18, 19], [21, 23, 24]]: output floor((5 + 2 - 3) / 2) + 1 = 3.
  Tensor x({1, 1, 5, 5}), y, dx;
  std::iota(x.storage().begin(), x.storage().end(), 0.0f);
  LayerPtr stem = make_layer({"pool", {{"k", 3}, {"s", 2}, {"p", 1}}}, {1, 1, 5, 5});
  stem->forward(x, y, {});
  ASSERT_EQ(y.shape(), (Shape{1, 1, 3, 3}));
  EXPECT_EQ(y.values(), (std::vector<float>{6, 8, 9, 16, 18, 19, 21, 23, 24}));
  // Ties (all ones): PyTorch's CPU kernel keeps the first maximum of the window in raster order,
  // the first real element; here window o starts at row/column max(2o - 1, 0) = 0, 1, 3.
  x.fill(1.0f);
  stem->forward(x, y, {});
  Tensor dy(y.shape());
  std::iota(dy.storage().begin(), dy.storage().end(), 1.0f);
  stem->backward(x, y, dy, dx);
  std::vector<float> expected(25, 0.0f);
  const int start[] = {0, 1, 3};
  for (int oh = 0; oh < 3; ++oh)
    for (int ow = 0; ow < 3; ++ow) expected[start[oh] * 5 + start[ow]] = dy[oh * 3 + ow];
  EXPECT_EQ(dx.values(), expected);
  // MaxPool2d(2, 1) on a 3x3 input with one peak: every window's maximum, its gradients add.
  Tensor peak({1, 1, 3, 3}, 0.0f);
  peak[4] = 9.0f;
  LayerPtr overlap = make_layer({"pool", {{"k", 2}, {"s", 1}}}, {1, 1, 3, 3});
  overlap->forward(peak, y, {});
  EXPECT_EQ(y.values(), (std::vector<float>{9, 9, 9, 9}));
  dy = Tensor(y.shape());
  dy.storage() = {1, 2, 3, 4};
  overlap->backward(peak, y, dy, dx);
  EXPECT_EQ(dx.values(), (std::vector<float>{0, 0, 0, 0, 10, 0, 0, 0, 0}));
  // Output sizes as PyTorch's floor mode: the ResNet stem halves 112 to 56, 7 -> 4; pool3s2
  // drops what no whole window covers.
  EXPECT_EQ(make_layer({"pool", {{"k", 3}, {"s", 2}, {"p", 1}}}, {1, 64, 112, 112})->output_shape({2, 64, 112, 112}),
            (Shape{2, 64, 56, 56}));
  EXPECT_EQ(make_layer({"pool", {{"k", 3}, {"s", 2}, {"p", 1}}}, {1, 1, 7, 7})->output_shape({1, 1, 7, 7}),
            (Shape{1, 1, 4, 4}));
  EXPECT_EQ(make_layer({"pool", {{"k", 3}, {"s", 2}}}, {1, 1, 8, 7})->output_shape({1, 1, 8, 7}), (Shape{1, 1, 3, 3}));
  const auto* max_pool = dynamic_cast<const MaxPool*>(stem.get());
  ASSERT_NE(max_pool, nullptr);
  EXPECT_EQ(max_pool->kernel(), 3);
  EXPECT_EQ(max_pool->stride(), 2);
  EXPECT_EQ(max_pool->padding(), 1);
}

// Non-overlapping windows without padding take the fast path; the general loop is the
// reference it must equal, bit for bit, forward and backward, with remainders and with ties.
TEST(Pool, FastPathEqualsTheReference) {
  // Rows and columns left over; the wide shape also runs the 2x2 backward's vector loop (eight
  // outputs at a time) twice before its scalar tail.
  for (const Shape in : {Shape{5, 3, 7, 10}, Shape{3, 2, 6, 37}}) {
    for (int k : {2, 3}) {
      for (const bool ties : {false, true}) {
        SCOPED_TRACE("pool" + std::to_string(k) + (ties ? " with ties" : "") + " on " + in.str());
        Tensor x = make_input(in, ties ? Input::away_from_zero : Input::distinct, 8);
        if (ties)
          for (float& v : x.storage()) v = std::max(v, 0.0f);  // ReLU outputs: many windows all 0
        MaxPool fast(in, k), reference(in, k);
        reference.force_reference(true);
        Tensor y_fast, y_ref, dx_fast, dx_ref;
        fast.forward(x, y_fast, {});
        reference.forward(x, y_ref, {});
        EXPECT_EQ(y_fast.values(), y_ref.values());
        const Tensor dy = make_input(y_fast.shape(), Input::uniform, 9);
        dx_fast.resize(in);
        dx_fast.fill(5.0f);  // backward assigns: stale values must not survive
        fast.backward(x, y_fast, dy, dx_fast);
        reference.backward(x, y_ref, dy, dx_ref);
        EXPECT_EQ(dx_fast.values(), dx_ref.values());
      }
    }
  }
}

TEST(Pool, OverlappingBitIdenticalWithOneOrTwoThreads) {
  const Shape in{19, 8, 16, 16};  // 19: uneven chunks; big enough for the parallel path
  const Tensor x = make_input(in, Input::uniform, 3);
  std::vector<float> out[2], dx[2];
  for (int t = 0; t < 2; ++t) {
    in_arena(t + 1, [&] {
      LayerPtr pool = make_layer({"pool", {{"k", 3}, {"s", 2}, {"p", 1}}}, in);
      Tensor y, d;
      pool->forward(x, y, {});
      pool->backward(x, y, make_input(y.shape(), Input::uniform, 4), d);
      out[t] = y.values();
      dx[t] = d.values();
    });
  }
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(dx[0], dx[1]);
}

TEST(LayerActivation, ByHand) {
  Tensor x({1, 4, 1, 1}), y;
  x.storage() = {-2, -0.5f, 0, 3};
  make_layer({"relu", {}}, x.shape())->forward(x, y, {});
  EXPECT_EQ(y.values(), (std::vector<float>{0, 0, 0, 3}));
  make_layer({"lrelu", {}}, x.shape())->forward(x, y, {});
  EXPECT_EQ(y.values(), (std::vector<float>{-0.02f, -0.005f, 0, 3}));
  make_layer({"lrelu", {{"a", 0.25}}}, x.shape())->forward(x, y, {});
  EXPECT_EQ(y.values(), (std::vector<float>{-0.5f, -0.125f, 0, 3}));
  make_layer({"tanh", {}}, x.shape())->forward(x, y, {});
  for (int i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(y[i], std::tanh(x[i]));
}

TEST(BatchNorm, TrainNormalisesAndUpdatesRunningStatistics) {
  const Shape in{4, 2, 3, 3};
  Tensor x = make_input(in, Input::uniform, 8), y;
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = 3.0f * x[i] + ((i / 9) % 2 ? 5.0f : -1.0f);
  BatchNorm bn(in);
  bn.forward(x, y, train_context());
  for (int c = 0; c < 2; ++c) {
    double sum = 0, sq = 0, xs = 0, xsq = 0;
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 9; ++j) {
        const float v = y.sample(i)[c * 9 + j], u = x.sample(i)[c * 9 + j];
        sum += v, sq += v * v, xs += u, xsq += u * u;
      }
    EXPECT_NEAR(sum / 36, 0.0, 1e-5);
    EXPECT_NEAR(sq / 36, 1.0, 1e-3);  // var / (var + eps)
    const double mean = xs / 36, var = xsq / 36 - mean * mean;
    EXPECT_NEAR(bn.running_mean()[c], 0.1 * mean, 1e-5);
    EXPECT_NEAR(bn.running_var()[c], 0.9 + 0.1 * var * 36 / 35, 1e-4);  // unbiased
  }
  EXPECT_EQ(bn.state().size(), 2u);
  for (Param* p : bn.params()) EXPECT_FALSE(p->regularized);
}

// The statistics take one read of the batch (shifted sums): a channel whose values sit far from
// 0 with a small spread still gets its variance right, where an unshifted E[x^2] - E[x]^2 in
// float would lose it to cancellation.
TEST(BatchNorm, OnePassStatisticsSurviveALargeOffset) {
  const Shape in{8, 1, 8, 8};
  Tensor x = make_input(in, Input::uniform, 3), y;  // uniform in [-1, 1]: variance 1/3
  double sum = 0, sq = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    x[i] = 1000.0f + 0.01f * x[i];
    sum += x[i];
  }
  const double mean = sum / x.size();
  for (std::size_t i = 0; i < x.size(); ++i) sq += (x[i] - mean) * (x[i] - mean);
  BatchNorm bn(in);
  bn.running_var().fill(0.0f);  // so that the float holds the batch's part alone: 0.1 var
  bn.forward(x, y, train_context());
  EXPECT_NEAR(bn.running_mean()[0], 0.1 * mean, 1e-3);
  const double unbiased = sq / (x.size() - 1.0);
  EXPECT_NEAR(bn.running_var()[0] / 0.1, unbiased, 1e-3 * unbiased);
}

// set_fused_relu: the same values as bn followed by a ReLU layer, forward and backward.
TEST(BatchNorm, FusedReluEqualsBatchNormThenRelu) {
  const Shape in{6, 3, 5, 5};
  const Tensor x = make_input(in, Input::uniform, 4), dy = make_input(in, Input::uniform, 5);
  BatchNorm plain(in), fused(in);
  fused.set_fused_relu(true);
  for (BatchNorm* bn : {&plain, &fused}) {
    bn->gamma().value.storage() = {1.5f, 0.5f, -1.0f};
    bn->beta().value.storage() = {0.2f, -0.3f, 0.0f};
  }
  Tensor normalised, relu_out, fused_out;
  plain.forward(x, normalised, train_context());
  auto relu = make_layer({"relu", {}}, in);
  relu->forward(normalised, relu_out, train_context());
  fused.forward(x, fused_out, train_context());
  ASSERT_EQ(fused_out.size(), relu_out.size());
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(fused_out[i], relu_out[i]) << i;
  std::size_t zeros = 0;
  for (float v : fused_out.values()) zeros += v == 0.0f;
  EXPECT_GT(zeros, x.size() / 5) << "the test must exercise the mask";

  Tensor d_normalised, dx_plain, dx_fused;
  relu->backward(normalised, relu_out, dy, d_normalised);
  plain.backward(x, normalised, d_normalised, dx_plain);
  fused.backward(x, fused_out, dy, dx_fused);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(dx_fused[i], dx_plain[i], 1e-5) << i;
  for (int c = 0; c < 3; ++c) {
    EXPECT_NEAR(fused.gamma().grad[c], plain.gamma().grad[c], 1e-4) << c;
    EXPECT_NEAR(fused.beta().grad[c], plain.beta().grad[c], 1e-4) << c;
  }
}

TEST(BatchNorm, TestModeUsesRunningStatistics) {
  BatchNorm bn({1, 2, 1, 1});
  bn.running_mean().storage() = {1.0f, -2.0f};
  bn.running_var().storage() = {4.0f, 0.25f};
  bn.gamma().value.storage() = {2.0f, 1.0f};
  bn.beta().value.storage() = {0.5f, 0.0f};
  Tensor x({3, 2, 1, 1}), y;
  x.storage() = {3, -2, 1, 0, -1, -1};
  bn.forward(x, y, {});
  const double s0 = 1 / std::sqrt(4.0 + 1e-5), s1 = 1 / std::sqrt(0.25 + 1e-5);
  EXPECT_NEAR(y[0], 2 * 2 * s0 + 0.5, 1e-5);
  EXPECT_NEAR(y[1], 0.0, 1e-5);
  EXPECT_NEAR(y[2], 0.5, 1e-5);
  EXPECT_NEAR(y[3], 2 * s1, 1e-5);
  EXPECT_NEAR(y[4], 2 * -2 * s0 + 0.5, 1e-5);
  EXPECT_NEAR(y[5], 1 * s1, 1e-5);
  EXPECT_EQ(bn.running_mean()[0], 1.0f);  // not updated in test mode
}

TEST(Dropout, InvertedScalingAndKeptFraction) {
  const double p = 0.3;
  Dropout drop(p);
  Tensor x({64, 1000, 1, 1}, 1.0f), y;
  drop.forward(x, y, train_context());
  double sum = 0;
  std::size_t kept = 0;
  for (float v : y.values()) {
    sum += v;
    if (v != 0.0f) {
      ++kept;
      EXPECT_FLOAT_EQ(v, static_cast<float>(1.0 / (1.0 - p)));
    }
  }
  EXPECT_NEAR(sum / y.size(), 1.0, 0.02);                                // expectation preserved
  EXPECT_NEAR(static_cast<double>(kept) / y.size(), 1.0 - p, 0.01);     // kept fraction
  Tensor dx;
  drop.backward(x, y, x, dx);
  EXPECT_EQ(dx.values(), y.values());  // dy = 1: the mask itself
}

TEST(Dropout, TestModeIsIdentity) {
  Dropout drop(0.5);
  const Tensor x = make_input({3, 4, 5, 5}, Input::uniform, 2);
  Tensor y, dx;
  drop.forward(x, y, {});
  EXPECT_EQ(y.values(), x.values());
  drop.backward(x, y, x, dx);
  EXPECT_EQ(dx.values(), x.values());
}

TEST(Dropout, MaskIsAFunctionOfContextOnly) {
  Dropout drop(0.5);
  const Tensor x = make_input({4, 3, 4, 4}, Input::away_from_zero, 2);
  Tensor a, b;
  drop.forward(x, a, train_context(5));
  drop.forward(x, b, train_context(5));
  EXPECT_EQ(a.values(), b.values());  // same ctx, same mask
  drop.forward(x, b, train_context(6));
  EXPECT_NE(a.values(), b.values());  // next step, new mask
  ForwardContext other_layer = train_context(5);
  other_layer.layer_index = 3;
  drop.forward(x, b, other_layer);
  EXPECT_NE(a.values(), b.values());
  // A sample keeps its mask wherever it lands in the batch (masks follow sample ids).
  const std::vector<std::uint64_t> ids = {10, 11, 12, 13}, swapped = {13, 11, 12, 10};
  ForwardContext ctx = train_context(5);
  ctx.sample_ids = &ids;
  drop.forward(x, a, ctx);
  Tensor xs = x;
  std::swap_ranges(xs.sample(0), xs.sample(1), xs.sample(3));
  ctx.sample_ids = &swapped;
  drop.forward(xs, b, ctx);
  EXPECT_TRUE(std::equal(a.sample(0), a.sample(1), b.sample(3)));
  EXPECT_TRUE(std::equal(a.sample(1), a.sample(3), b.sample(1)));
}

std::vector<std::string> param_names(Layer& layer) {
  std::vector<std::string> names;
  for (Param* p : layer.params()) names.push_back(p->name);
  return names;
}

TEST(Residual, ShapesParamsAndState) {
  LayerPtr same = build({"res", {{"out", 4}}}, {1, 4, 6, 6});
  EXPECT_EQ(same->output_shape({2, 4, 6, 6}), (Shape{2, 4, 6, 6}));
  EXPECT_EQ(same->params().size(), 6u);  // 2 convs (no bias) + 2 bn x (gamma, beta)
  EXPECT_EQ(same->state().size(), 4u);
  // Checkpoints match parameters by these names: they must not change.
  EXPECT_EQ(param_names(*same), (std::vector<std::string>{"res.conv1.weight", "res.bn1.gamma", "res.bn1.beta",
                                                          "res.conv2.weight", "res.bn2.gamma", "res.bn2.beta"}));
  LayerPtr down = build({"res", {{"out", 8}, {"s", 2}}}, {1, 4, 7, 7});
  EXPECT_EQ(down->output_shape({2, 4, 7, 7}), (Shape{2, 8, 4, 4}));
  EXPECT_EQ(down->params().size(), 9u);  // + projection conv and its bn
  EXPECT_EQ(down->state().size(), 6u);
  std::set<std::string> names;
  for (Param* p : down->params()) names.insert(p->name);
  EXPECT_EQ(names.size(), 9u);
  EXPECT_DOUBLE_EQ(down->flops_per_sample({1, 4, 7, 7}), 8.0 * 16 * 36 + 8.0 * 16 * 72 + 8.0 * 16 * 4);
  EXPECT_EQ(param_names(*down).back(), "res.proj_bn.beta");
  const auto& block = dynamic_cast<Residual&>(*down);
  EXPECT_TRUE(block.batch_norm());
  EXPECT_EQ(block.stride(), 2);
  EXPECT_EQ(block.out_channels(), 8);
  EXPECT_NE(block.bn1(), nullptr);
  EXPECT_NE(block.bn2(), nullptr);
  ASSERT_NE(block.projection(), nullptr);
  EXPECT_NE(block.projection_bn(), nullptr);
  EXPECT_FALSE(block.conv1().has_bias());
  EXPECT_FALSE(block.projection()->has_bias());
}

TEST(Residual, WithoutBatchNorm) {
  LayerPtr same = build({"res", {{"out", 4}, {"bn", 0}}}, {1, 4, 6, 6});
  EXPECT_EQ(same->spec(), "res4b0");
  EXPECT_EQ(param_names(*same),
            (std::vector<std::string>{"res.conv1.weight", "res.conv1.bias", "res.conv2.weight", "res.conv2.bias"}));
  EXPECT_TRUE(same->state().empty());
  EXPECT_EQ(dynamic_cast<Residual&>(*same).projection(), nullptr);

  LayerPtr down = build({"res", {{"out", 8}, {"s", 2}, {"bn", 0}}}, {1, 4, 7, 7});
  EXPECT_EQ(down->spec(), "res8s2b0");
  EXPECT_EQ(down->output_shape({2, 4, 7, 7}), (Shape{2, 8, 4, 4}));
  EXPECT_EQ(param_names(*down).size(), 6u);
  EXPECT_EQ(param_names(*down).back(), "res.proj.bias");
  EXPECT_TRUE(down->state().empty());
  const auto& block = dynamic_cast<const Residual&>(*down);
  EXPECT_FALSE(block.batch_norm());
  EXPECT_EQ(block.bn1(), nullptr);
  EXPECT_EQ(block.bn2(), nullptr);
  EXPECT_EQ(block.projection_bn(), nullptr);
  const Conv2d& c1 = block.conv1();
  EXPECT_EQ(std::vector<int>({c1.in_channels(), c1.out_channels(), c1.kernel(), c1.stride(), c1.padding()}),
            std::vector<int>({4, 8, 3, 2, 1}));
  EXPECT_TRUE(c1.has_bias());
  const Conv2d& c2 = block.conv2();
  EXPECT_EQ(std::vector<int>({c2.in_channels(), c2.out_channels(), c2.kernel(), c2.stride(), c2.padding()}),
            std::vector<int>({8, 8, 3, 1, 1}));
  EXPECT_TRUE(c2.has_bias());
  ASSERT_NE(block.projection(), nullptr);
  const Conv2d& proj = *block.projection();
  EXPECT_EQ(std::vector<int>({proj.in_channels(), proj.out_channels(), proj.kernel(), proj.stride(), proj.padding()}),
            std::vector<int>({4, 8, 1, 2, 0}));
  EXPECT_TRUE(proj.has_bias());
}

TEST(Residual, WithoutBatchNormByHand) {
  // res2b0 on 2 channels: conv1 all zero weights and bias (1, -1), so relu(conv1) is 1 on
  // channel 0 and 0 on channel 1 everywhere; conv2 reads channel 0 through its centre tap with
  // weight 2 into output channel 0 and has bias (0.5, -2). The branch is then 2.5 on channel 0
  // and -2 on channel 1 at every pixel, and y = relu(x + branch).
  Residual block({1, 2, 3, 3}, 2, 1, 1.0, false);
  block.conv1().weight().value.fill(0.0f);
  block.conv1().bias().value.storage() = {1.0f, -1.0f};
  block.conv2().weight().value.fill(0.0f);
  block.conv2().weight().value[4] = 2.0f;  // out 0, in 0, centre of the 3x3 kernel
  block.conv2().bias().value.storage() = {0.5f, -2.0f};
  const Tensor x = make_input({2, 2, 3, 3}, Input::uniform, 6);
  Tensor y;
  block.forward(x, y, {});
  ASSERT_EQ(y.shape(), x.shape());
  for (int i = 0; i < 2; ++i)
    for (int c = 0; c < 2; ++c)
      for (int j = 0; j < 9; ++j) {
        const float in = x.sample(i)[c * 9 + j];
        EXPECT_FLOAT_EQ(y.sample(i)[c * 9 + j], std::max(0.0f, in + (c == 0 ? 2.5f : -2.0f)));
      }
}

TEST(Residual, WithoutBatchNormBitIdenticalWithOneOrTwoThreads) {
  const Shape in{10, 4, 8, 8};
  const Tensor x = make_input(in, Input::uniform, 3);
  std::vector<float> out[2], dx[2], grads[2];
  for (int t = 0; t < 2; ++t) {
    in_arena(t + 1, [&] {
      LayerPtr res = build({"res", {{"out", 8}, {"s", 2}, {"bn", 0}, {"survival", 0.7}}}, in);
      Tensor y, d;
      res->forward(x, y, train_context());
      res->backward(x, y, make_input(y.shape(), Input::uniform, 4), d);
      out[t] = y.values();
      dx[t] = d.values();
      for (Param* p : res->params())
        for (float v : p->grad.values()) grads[t].push_back(v);
    });
  }
  EXPECT_EQ(out[0], out[1]);
  EXPECT_EQ(dx[0], dx[1]);
  EXPECT_EQ(grads[0], grads[1]);
}

// The block applies bn2 and the projection's batch norm inside its final add instead of storing
// their outputs: the result must be its layers run one after another, bit for bit, in training
// (batch statistics) and in test mode (running statistics), with and without a projection.
TEST(Residual, WithBatchNormEqualsItsLayersComposedBitForBit) {
  const Shape in{6, 4, 8, 8};
  const Tensor x = make_input(in, Input::uniform, 11);
  for (const LayerSpec& spec : {LayerSpec{"res", {{"out", 4}}}, LayerSpec{"res", {{"out", 8}, {"s", 2}}}}) {
    LayerPtr layer = build(spec, in);
    auto& block = dynamic_cast<Residual&>(*layer);
    ASSERT_NE(block.bn2(), nullptr);
    for (const Mode mode : {Mode::train, Mode::test}) {
      const ForwardContext ctx = mode == Mode::train ? train_context() : ForwardContext{};
      Tensor y;
      block.forward(x, y, ctx);
      Tensor c1, r1, c2, branch, p1, shortcut;
      block.conv1().forward(x, c1, ctx);
      block.bn1()->forward(c1, r1, ctx);  // with its fused ReLU
      block.conv2().forward(r1, c2, ctx);
      block.bn2()->forward(c2, branch, ctx);
      const Tensor* s = &x;
      if (block.projection()) {
        block.projection()->forward(x, p1, ctx);
        block.projection_bn()->forward(p1, shortcut, ctx);
        s = &shortcut;
      }
      ASSERT_EQ(y.shape(), branch.shape());
      std::size_t mismatches = 0;
      for (std::size_t i = 0; i < y.size(); ++i) {
        const float z = (*s)[i] + branch[i];
        mismatches += y[i] != (z > 0.0f ? z : 0.0f);
      }
      EXPECT_EQ(mismatches, 0u) << block.spec() << (mode == Mode::train ? ", train" : ", test");
    }
  }
}

TEST(Residual, StochasticDepth) {
  // Identity shortcut: y = relu(x + g * branch). The same weights with survival 1 give
  // relu(x + branch), so where that is positive the branch is known and
  //   test:  y = relu(x + p * branch);   train: each sample is relu(x + branch) or relu(x).
  const Shape in{200, 2, 3, 3};
  const Tensor x = make_input(in, Input::uniform, 21);
  const double p = 0.6;
  LayerPtr full = build({"res", {{"out", 2}}}, in, 5);
  LayerPtr sd = build({"res", {{"out", 2}, {"survival", p}}}, in, 5);
  Tensor y_full, y_sd;
  full->forward(x, y_full, {});
  sd->forward(x, y_sd, {});
  std::size_t checked = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (y_full[i] <= 0.0f) continue;
    const float branch = y_full[i] - x[i];
    EXPECT_NEAR(y_sd[i], std::max(0.0f, x[i] + static_cast<float>(p) * branch), 1e-5f);
    ++checked;
  }
  EXPECT_GT(checked, x.size() / 4);

  full->forward(x, y_full, train_context());
  sd->forward(x, y_sd, train_context());
  const std::size_t per = in.per_sample();
  int kept = 0;
  for (int i = 0; i < in.n; ++i) {
    bool as_full = true, as_dropped = true;
    for (std::size_t j = 0; j < per; ++j) {
      const float v = y_sd.sample(i)[j];
      as_full = as_full && v == y_full.sample(i)[j];
      as_dropped = as_dropped && v == std::max(0.0f, x.sample(i)[j]);
    }
    EXPECT_TRUE(as_full || as_dropped) << "sample " << i;
    kept += as_full && !as_dropped;
  }
  EXPECT_NEAR(kept / 200.0, p, 0.1);  // 3.5 sigma for 200 samples
}

}  // namespace
}  // namespace augflow::model
