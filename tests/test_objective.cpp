// The training objective: softmax cross-entropy (values, gradient by central differences,
// stability, label checks) and the L1/L2/elastic-net weight penalties.
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.hpp"
#include "tests/fixtures.hpp"
#include "model/loss.hpp"
#include "model/regularizer.hpp"

namespace augflow::model {
namespace {

using test::expect_throws_with;

/// Values on a 1/64 grid in [-3, 3]: a grid value plus or minus 2^-10 is exact in float, so the
/// central differences below measure the loss, not the rounding of the perturbed inputs.
Tensor grid_tensor(Shape shape, std::uint32_t seed) {
  std::mt19937 gen(seed);
  Tensor t(shape);
  for (std::size_t i = 0; i < t.size(); ++i) {
    t[i] = static_cast<float>(static_cast<int>(gen() % 385) - 192) / 64.0f;
  }
  return t;
}

Tensor row(std::initializer_list<std::initializer_list<float>> rows) {
  const int n = static_cast<int>(rows.size());
  const int k = static_cast<int>(rows.begin()->size());
  Tensor t(Shape{n, k, 1, 1});
  std::size_t i = 0;
  for (const auto& r : rows) {
    for (float v : r) t[i++] = v;
  }
  return t;
}

// ---------------------------------------------------------------------------------------------
// Loss

// Label smoothing, worked out by hand: logits (ln 3, 0) give p = (3/4, 1/4); with eps = 0.2 and
// K = 2 the target of label 0 is q = (0.9, 0.1), the loss -(0.9 ln 3/4 + 0.1 ln 1/4) and the
// gradient p - q = (-0.15, 0.15).
TEST(Loss, LabelSmoothingByHand) {
  const Tensor logits = row({{std::log(3.0f), 0.0f}});
  const std::vector<int> labels = {0};
  Tensor d;
  const LossResult r = softmax_cross_entropy(logits, labels, d, 0.2);
  EXPECT_NEAR(r.loss, -(0.9 * std::log(0.75) + 0.1 * std::log(0.25)), 1e-6);
  EXPECT_NEAR(d[0], -0.15, 1e-6);
  EXPECT_NEAR(d[1], 0.15, 1e-6);
  EXPECT_EQ(r.correct, 1);
  // Validation's loss (no smoothing argument) stays the plain NLL, -ln 3/4.
  EXPECT_NEAR(softmax_cross_entropy(logits, labels).loss, -std::log(0.75), 1e-6);
  // eps = 0 is the plain loss, bit for bit.
  Tensor plain, zero;
  const Tensor batch = grid_tensor(Shape{3, 4, 1, 1}, 11);
  const std::vector<int> three = {0, 2, 3};
  EXPECT_EQ(softmax_cross_entropy(batch, three, plain).loss, softmax_cross_entropy(batch, three, zero, 0.0).loss);
  for (std::size_t i = 0; i < plain.size(); ++i) EXPECT_EQ(plain[i], zero[i]);
  EXPECT_THROW(softmax_cross_entropy(logits, labels, d, 1.0), ConfigError);
  EXPECT_THROW(softmax_cross_entropy(logits, labels, d, -0.1), ConfigError);
}

TEST(Loss, LabelSmoothingGradientMatchesCentralDifferences) {
  const int n = 4;
  const int k = 5;
  const double eps = 0.1;
  Tensor logits = grid_tensor(Shape{n, k, 1, 1}, 9);
  const std::vector<int> labels = {1, 0, 4, 2};
  Tensor dlogits, scratch;
  softmax_cross_entropy(logits, labels, dlogits, eps);
  const float h = 1.0f / 1024.0f;
  double max_err = 0.0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const float saved = logits[i];
    logits[i] = saved + h;
    const double plus = softmax_cross_entropy(logits, labels, scratch, eps).loss;
    logits[i] = saved - h;
    const double minus = softmax_cross_entropy(logits, labels, scratch, eps).loss;
    logits[i] = saved;
    const double numeric = (plus - minus) / (2.0 * h);
    max_err = std::max(max_err, std::fabs(numeric - dlogits[i]) / std::max(1e-3, std::fabs(numeric)));
  }
  EXPECT_LT(max_err, 1e-4) << "max relative error of the smoothed dlogits against central differences";
}

TEST(Loss, GradientMatchesCentralDifferences) {
  const int n = 4;
  const int k = 5;
  Tensor logits = grid_tensor(Shape{n, k, 1, 1}, 7);
  const std::vector<int> labels = {0, 3, 4, 1};
  Tensor dlogits;
  softmax_cross_entropy(logits, labels, dlogits);
  ASSERT_EQ(dlogits.shape(), logits.shape());
  const float h = 1.0f / 1024.0f;
  double max_err = 0.0;
  for (std::size_t i = 0; i < logits.size(); ++i) {
    const float saved = logits[i];
    logits[i] = saved + h;
    const double plus = softmax_cross_entropy(logits, labels).loss;
    logits[i] = saved - h;
    const double minus = softmax_cross_entropy(logits, labels).loss;
    logits[i] = saved;
    const double numeric = (plus - minus) / (2.0 * h);
    const double err = std::fabs(numeric - dlogits[i]);
    max_err = std::max(max_err, err / std::max(1e-3, std::fabs(numeric)));
  }
  EXPECT_LT(max_err, 1e-4) << "max relative error of dlogits against central differences";
}

TEST(Loss, UniformLogitsGiveLogK) {
  for (float value : {0.0f, 3.7f, -250.0f}) {
    const int n = 3;
    const int k = 7;
    const Tensor logits(Shape{n, k, 1, 1}, value);
    const std::vector<int> labels = {0, 6, 2};
    Tensor d;
    const LossResult r = softmax_cross_entropy(logits, labels, d);
    EXPECT_NEAR(r.loss, std::log(7.0), 1e-9);
    EXPECT_EQ(r.correct, 1);  // ties go to class 0: only the sample labelled 0 is correct
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < k; ++j) {
        const double expected = ((1.0 / k) - (j == labels[i] ? 1.0 : 0.0)) / n;
        EXPECT_NEAR(d.sample(i)[j], expected, 1e-7);
      }
    }
  }
}

TEST(Loss, HandComputedTwoClassExample) {
  // Sample 0: logits (1, 2), label 0: p = (1/(1+e), e/(1+e)), loss = log(1 + e).
  // Sample 1: logits (0, 0), label 1: p = (1/2, 1/2), loss = log 2. Mean = 1.0032044340.
  const Tensor logits = row({{1.0f, 2.0f}, {0.0f, 0.0f}});
  const std::vector<int> labels = {0, 1};
  Tensor d;
  const LossResult r = softmax_cross_entropy(logits, labels, d);
  EXPECT_NEAR(r.loss, 1.003204434039084, 1e-12);
  EXPECT_EQ(r.correct, 0);
  EXPECT_NEAR(d[0], (0.2689414213699951 - 1.0) / 2, 1e-7);
  EXPECT_NEAR(d[1], 0.7310585786300049 / 2, 1e-7);
  EXPECT_NEAR(d[2], 0.5 / 2, 1e-7);
  EXPECT_NEAR(d[3], (0.5 - 1.0) / 2, 1e-7);
}

TEST(Loss, StableForLargeLogits) {
  const Tensor logits = row({{1000.0f, 0.0f}, {-1000.0f, 1000.0f}, {1000.0f, 0.0f}});
  const std::vector<int> labels = {0, 1, 1};
  Tensor d;
  const LossResult r = softmax_cross_entropy(logits, labels, d);
  EXPECT_NEAR(r.loss, 1000.0 / 3.0, 1e-6);
  EXPECT_EQ(r.correct, 2);
  for (std::size_t i = 0; i < d.size(); ++i) EXPECT_TRUE(std::isfinite(d[i]));
  Tensor p;
  softmax(logits, p);
  EXPECT_FLOAT_EQ(p[0], 1.0f);
  EXPECT_FLOAT_EQ(p[3], 1.0f);
}

TEST(Loss, NonFiniteLogitsGiveNonFiniteLoss) {
  Tensor logits = row({{0.5f, 1.0f, -1.0f}, {0.0f, 0.0f, 0.0f}});
  const std::vector<int> labels = {2, 0};
  logits[1] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_FALSE(std::isfinite(softmax_cross_entropy(logits, labels).loss));
  logits[1] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(std::isfinite(softmax_cross_entropy(logits, labels).loss));
  logits[1] = 1.0f;
  logits[2] = -std::numeric_limits<float>::infinity();  // the label's logit: loss +inf
  EXPECT_EQ(softmax_cross_entropy(logits, labels).loss, std::numeric_limits<double>::infinity());
}

TEST(Loss, BadLabelsAndShapesThrowShapeError) {
  const Tensor logits(Shape{2, 3, 1, 1}, 0.0f);
  Tensor d;
  const std::vector<int> too_big = {0, 3};
  const std::vector<int> negative = {-1, 0};
  const std::vector<int> short_labels = {0};
  EXPECT_THROW(softmax_cross_entropy(logits, too_big, d), ShapeError);
  expect_throws_with([&] { softmax_cross_entropy(logits, too_big, d); },
                     "label 3 of sample 1 is outside [0, 3)");
  expect_throws_with([&] { softmax_cross_entropy(logits, negative); }, "label -1 of sample 0");
  expect_throws_with([&] { softmax_cross_entropy(logits, short_labels); }, "1 labels for a batch of 2");
  const Tensor spatial(Shape{2, 3, 2, 2}, 0.0f);
  const std::vector<int> ok = {0, 1};
  EXPECT_THROW(softmax_cross_entropy(spatial, ok), ShapeError);
  EXPECT_THROW(count_top_k(logits, too_big, 1), ShapeError);
  EXPECT_THROW(nll_of_probabilities(logits, negative), ShapeError);
}

TEST(Loss, SoftmaxRowsSumToOneAndMatchTheLoss) {
  const Tensor logits = grid_tensor(Shape{5, 4, 1, 1}, 11);
  const std::vector<int> labels = {0, 1, 2, 3, 0};
  Tensor p;
  softmax(logits, p);
  ASSERT_EQ(p.shape(), logits.shape());
  for (int i = 0; i < 5; ++i) {
    double sum = 0.0;
    for (int j = 0; j < 4; ++j) sum += p.sample(i)[j];
    EXPECT_NEAR(sum, 1.0, 1e-6);
  }
  const LossResult from_logits = softmax_cross_entropy(logits, labels);
  const LossResult from_probs = nll_of_probabilities(p, labels);
  EXPECT_NEAR(from_logits.loss, from_probs.loss, 1e-6);
  EXPECT_EQ(from_logits.correct, from_probs.correct);
}

TEST(Loss, TopKCountsLabelsAmongTheKHighest) {
  const Tensor scores = row({{0.1f, 0.5f, 0.3f, 0.1f},    // label 2: rank 1
                             {0.4f, 0.3f, 0.2f, 0.1f},    // label 3: rank 3
                             {0.25f, 0.25f, 0.25f, 0.25f},  // label 1: tie, rank 1 (index 0 first)
                             {0.9f, 0.0f, 0.0f, 0.1f}});  // label 0: rank 0
  const std::vector<int> labels = {2, 3, 1, 0};
  EXPECT_EQ(count_top_k(scores, labels, 1), 1);
  EXPECT_EQ(count_top_k(scores, labels, 2), 3);
  EXPECT_EQ(count_top_k(scores, labels, 3), 3);
  EXPECT_EQ(count_top_k(scores, labels, 4), 4);
  EXPECT_EQ(count_top_k(scores, labels, 10), 4);
  EXPECT_EQ(count_top_k(scores, labels, 1), softmax_cross_entropy(scores, labels).correct);
  EXPECT_THROW(count_top_k(scores, labels, 0), ConfigError);
}

// ---------------------------------------------------------------------------------------------
// Regularizer

struct TwoParams {
  Param weight{"fc1.weight", Tensor(Shape{1, 4, 1, 1}), Tensor(Shape{1, 4, 1, 1}), true};
  Param bias{"fc1.bias", Tensor(Shape{1, 2, 1, 1}), Tensor(Shape{1, 2, 1, 1}), false};
  TwoParams() {
    const float w[] = {1.0f, -2.0f, 0.0f, 3.0f};
    for (int i = 0; i < 4; ++i) {
      weight.value[i] = w[i];
      weight.grad[i] = 0.5f;
    }
    bias.value[0] = 5.0f;
    bias.value[1] = -5.0f;
    bias.grad[0] = 0.25f;
    bias.grad[1] = -0.25f;
  }
  std::vector<Param*> list() { return {&weight, &bias}; }
};

TEST(Regularizer, PenaltyValues) {
  TwoParams p;
  // Σ W² = 14, Σ |W| = 6 over the weight only; the bias (Σ 50 and 10) is not counted.
  EXPECT_NEAR(regularizer_penalty({RegularizerKind::l2, 0.1, 1.0}, p.list()), 1.4, 1e-12);
  EXPECT_NEAR(regularizer_penalty({RegularizerKind::l1, 0.1, 1.0}, p.list()), 0.6, 1e-12);
  EXPECT_NEAR(regularizer_penalty({RegularizerKind::elastic, 0.1, 0.5}, p.list()), 1.3, 1e-12);
  EXPECT_EQ(regularizer_penalty({RegularizerKind::none, 0.1, 1.0}, p.list()), 0.0);
  EXPECT_EQ(p.weight.grad[0], 0.5f);  // the value-only function leaves gradients alone
}

TEST(Regularizer, GradientsAreAddedToWeightsOnly) {
  const struct {
    Regularizer reg;
    float expected[4];  // grad after: 0.5 + ∂(λR)/∂W at W = (1, -2, 0, 3)
  } cases[] = {
      {{RegularizerKind::l2, 0.1, 1.0}, {0.7f, 0.1f, 0.5f, 1.1f}},
      {{RegularizerKind::l1, 0.1, 1.0}, {0.6f, 0.4f, 0.5f, 0.6f}},  // sign(0) = 0
      {{RegularizerKind::elastic, 0.1, 0.5}, {0.7f, 0.2f, 0.5f, 0.9f}},
  };
  for (const auto& c : cases) {
    TwoParams p;
    const double value = apply_regularizer(c.reg, p.list());
    EXPECT_NEAR(value, regularizer_penalty(c.reg, p.list()), 1e-12);
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(p.weight.grad[i], c.expected[i], 1e-6) << i;
    EXPECT_EQ(p.bias.grad[0], 0.25f);
    EXPECT_EQ(p.bias.grad[1], -0.25f);
    EXPECT_EQ(p.bias.value[0], 5.0f);
    EXPECT_EQ(p.weight.value[1], -2.0f);
  }
}

TEST(Regularizer, GradientMatchesCentralDifferences) {
  for (const Regularizer reg : {Regularizer{RegularizerKind::l2, 0.03, 1.0},
                                Regularizer{RegularizerKind::l1, 0.03, 1.0},
                                Regularizer{RegularizerKind::elastic, 0.03, 0.7}}) {
    Param w{"conv1.weight", grid_tensor(Shape{2, 3, 2, 2}, 5), Tensor(Shape{2, 3, 2, 2}), true};
    for (std::size_t i = 0; i < w.value.size(); ++i) {
      if (w.value[i] == 0.0f) w.value[i] = 0.5f;  // |W| has no derivative at 0
    }
    std::vector<Param*> params = {&w};
    apply_regularizer(reg, params);
    const float h = 1.0f / 1024.0f;
    for (std::size_t i = 0; i < w.value.size(); ++i) {
      const float saved = w.value[i];
      w.value[i] = saved + h;
      const double plus = regularizer_penalty(reg, params);
      w.value[i] = saved - h;
      const double minus = regularizer_penalty(reg, params);
      w.value[i] = saved;
      EXPECT_NEAR(w.grad[i], (plus - minus) / (2.0 * h), 1e-6) << print_regularizer(reg) << " " << i;
    }
  }
}

TEST(Regularizer, ParseAndPrintRoundTrip) {
  EXPECT_EQ(parse_regularizer("none"), Regularizer{});
  EXPECT_EQ(parse_regularizer("l2:5e-4"), (Regularizer{RegularizerKind::l2, 5e-4, 1.0}));
  EXPECT_EQ(parse_regularizer("l1:0.001"), (Regularizer{RegularizerKind::l1, 1e-3, 1.0}));
  EXPECT_EQ(parse_regularizer("elastic:1e-4"), (Regularizer{RegularizerKind::elastic, 1e-4, 1.0}));
  EXPECT_EQ(parse_regularizer("elastic:1e-4:0.5"),
            (Regularizer{RegularizerKind::elastic, 1e-4, 0.5}));
  for (const char* text : {"none", "l2:5e-04", "l1:0.001", "elastic:1e-04:0.5"}) {
    EXPECT_EQ(print_regularizer(parse_regularizer(text)), text);
  }
  for (const char* bad : {"", "l2", "l2:", "l2:-1", "l2:abc", "l2:1:2", "l3:0.1", "none:1",
                          "elastic", "l1:inf"}) {
    EXPECT_THROW(parse_regularizer(bad), ConfigError) << bad;
  }
  expect_throws_with([] { parse_regularizer("l3:0.1"); }, "accepted forms");
  expect_throws_with([] { parse_regularizer("l3:0.1"); }, "\"l3:0.1\"");
  TwoParams p;
  EXPECT_THROW(apply_regularizer({RegularizerKind::l2, -1.0, 1.0}, p.list()), ConfigError);
}

}  // namespace
}  // namespace augflow::model
