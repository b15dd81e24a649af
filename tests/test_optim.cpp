// Optimizers (convergence on a quadratic, first steps by hand, AdamW's decoupled decay, state
// round trip, zeroed gradients, errors) and learning-rate schedules (values, cycle ends, parser).
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "common/error.hpp"
#include "tests/fixtures.hpp"
#include "model/optim.hpp"

namespace augflow::model {
namespace {

using test::expect_throws_with;

Param scalar_param(const std::string& name, float value, float grad, bool regularized = true) {
  Param p{name, Tensor(Shape{1, 1, 1, 1}, value), Tensor(Shape{1, 1, 1, 1}, grad), regularized};
  return p;
}

/// f(w) = Σ a_i (w_i − c_i)² over two parameters (3 + 2 values), started at w = 0.
struct Quadratic {
  std::vector<float> a = {1.0f, 4.0f, 0.25f, 2.0f, 0.5f};
  std::vector<float> c = {1.0f, -2.0f, 3.0f, 0.5f, -1.5f};
  Param w1{"layer.weight", Tensor(Shape{1, 3, 1, 1}), Tensor(Shape{1, 3, 1, 1}), true};
  Param w2{"layer.bias", Tensor(Shape{1, 2, 1, 1}), Tensor(Shape{1, 2, 1, 1}), false};

  std::vector<Param*> params() { return {&w1, &w2}; }
  float& value(int i) { return i < 3 ? w1.value[i] : w2.value[i - 3]; }
  float& grad(int i) { return i < 3 ? w1.grad[i] : w2.grad[i - 3]; }
  /// Adds ∇f into the grads, as backward does.
  void backward() {
    for (int i = 0; i < 5; ++i) grad(i) += 2.0f * a[i] * (value(i) - c[i]);
  }
  double max_error() {
    double e = 0.0;
    for (int i = 0; i < 5; ++i) e = std::max(e, std::fabs(static_cast<double>(value(i)) - c[i]));
    return e;
  }
  std::vector<float> values() {
    std::vector<float> v;
    for (int i = 0; i < 5; ++i) v.push_back(value(i));
    return v;
  }
};

// ---------------------------------------------------------------------------------------------
// Optimizers

TEST(Optim, EachOptimizerReachesTheMinimumOfAQuadratic) {
  const struct {
    const char* name;
    float lr;
    int steps;
    double tolerance;
  } cases[] = {
      {"sgd", 0.1f, 600, 1e-4},      {"momentum", 0.02f, 600, 1e-4},
      {"nesterov", 0.02f, 600, 1e-4}, {"adam", 0.05f, 1500, 1e-3},
      {"adamw", 0.05f, 1500, 1e-3},
  };
  for (const auto& c : cases) {
    Quadratic q;
    auto opt = make_optimizer(c.name);
    for (int s = 0; s < c.steps; ++s) {
      q.backward();
      // Adam does not settle at a fixed rate: anneal it, as training would.
      const float lr = std::string(c.name).starts_with("adam")
                           ? static_cast<float>(parse_schedule("cosine").lr(c.lr, s, 0.0, c.steps))
                           : c.lr;
      opt->step(q.params(), lr);
    }
    EXPECT_LT(q.max_error(), c.tolerance) << c.name;
    EXPECT_EQ(opt->steps(), static_cast<std::uint64_t>(c.steps));
  }
}

TEST(Optim, FirstStepsMatchHandComputedValues) {
  // w0 = 1, g1 = 2, g2 = 1, lr = 0.1 (0.01 for Adam), μ = 0.9.
  const struct {
    const char* name;
    float lr;
    double after1;
    double after2;
  } cases[] = {
      // w -= 0.1 g
      {"sgd", 0.1f, 0.8, 0.7},
      // v = -0.2, w = 0.8; v = 0.9(-0.2) - 0.1 = -0.28, w = 0.52
      {"momentum", 0.1f, 0.8, 0.52},
      // v = -0.2, w = 1 - 0 + 1.9(-0.2) = 0.62; v = -0.28, w = 0.62 + 0.18 + 1.9(-0.28) = 0.268
      {"nesterov", 0.1f, 0.62, 0.268},
      // m̂ = 2, v̂ = 4: w = 1 - 0.01·2/(2 + 1e-8); then m = 0.28, v = 0.004996,
      // m̂ = 0.28/0.19, v̂ = 0.004996/0.001999: w = 0.980678203670851
      {"adam", 0.01f, 0.99000000005, 0.980678203670851},
  };
  for (const auto& c : cases) {
    Param p = scalar_param("w", 1.0f, 2.0f);
    std::vector<Param*> params = {&p};
    auto opt = make_optimizer(c.name);
    opt->step(params, c.lr);
    EXPECT_NEAR(p.value[0], c.after1, 1e-6) << c.name;
    p.grad[0] = 1.0f;
    opt->step(params, c.lr);
    EXPECT_NEAR(p.value[0], c.after2, 1e-6) << c.name;
  }
}

TEST(Optim, AdamWDecaysOnlyRegularizedParams) {
  OptimizerOptions options;
  options.weight_decay = 0.5;
  auto opt = make_optimizer("adamw", options);
  // Zero gradients: the Adam part moves nothing, so only the decay W -= lr·d·W shows.
  Param weight = scalar_param("fc.weight", 1.0f, 0.0f, true);
  Param bias = scalar_param("fc.bias", 1.0f, 0.0f, false);
  std::vector<Param*> params = {&weight, &bias};
  opt->step(params, 0.1f);
  EXPECT_FLOAT_EQ(weight.value[0], 0.95f);
  EXPECT_EQ(bias.value[0], 1.0f);
  opt->step(params, 0.1f);
  EXPECT_FLOAT_EQ(weight.value[0], 0.95f * 0.95f);
  EXPECT_EQ(bias.value[0], 1.0f);

  // Decoupled: with a gradient, the step is the decay plus exactly Adam's step from g alone.
  Param w_adamw = scalar_param("w", 2.0f, 3.0f);
  Param w_adam = scalar_param("w", 2.0f, 3.0f);
  std::vector<Param*> pw = {&w_adamw};
  std::vector<Param*> pa = {&w_adam};
  make_optimizer("adamw", options)->step(pw, 0.01f);
  make_optimizer("adam")->step(pa, 0.01f);
  EXPECT_NEAR(w_adamw.value[0], w_adam.value[0] - 0.01 * 0.5 * 2.0, 1e-6);
}

TEST(Optim, StepZeroesGradients) {
  for (const auto& name : optimizer_names()) {
    Quadratic q;
    q.backward();
    make_optimizer(name)->step(q.params(), 0.01f);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(q.grad(i), 0.0f) << name;
  }
}

TEST(Optim, StateRoundTripIsBitIdentical) {
  for (const auto& name : optimizer_names()) {
    OptimizerOptions options;
    if (name == "adamw") options.weight_decay = 0.1;
    Quadratic q;
    auto opt = make_optimizer(name, options);
    const auto run = [&](Optimizer& o, int steps) {
      for (int s = 0; s < steps; ++s) {
        q.backward();
        o.step(q.params(), 0.01f * (1.0f + 0.1f * s));
      }
    };
    run(*opt, 3);
    const OptimizerState saved = opt->state();
    const std::vector<float> saved_values = q.values();
    ASSERT_TRUE(saved.contains("step")) << name;
    EXPECT_EQ(saved.at("step").size(), 1u);
    EXPECT_EQ(saved.at("step")[0], 3.0f);
    if (name == "momentum" || name == "nesterov") {
      EXPECT_TRUE(saved.contains("velocity/layer.weight"));
      EXPECT_TRUE(saved.contains("velocity/layer.bias"));
      EXPECT_EQ(saved.size(), 3u);
    } else if (name == "adam" || name == "adamw") {
      EXPECT_TRUE(saved.contains("adam_m/layer.weight"));
      EXPECT_TRUE(saved.contains("adam_v/layer.bias"));
      EXPECT_EQ(saved.size(), 5u);
    } else {
      EXPECT_EQ(saved.size(), 1u);
    }

    run(*opt, 5);
    const std::vector<float> first = q.values();

    // Restore into the same optimizer and into a fresh one: both must replay bit for bit.
    for (int fresh = 0; fresh < 2; ++fresh) {
      auto other = make_optimizer(name, options);
      Optimizer& target = fresh ? *other : *opt;
      target.load_state(saved);
      EXPECT_EQ(target.steps(), 3u);
      for (int i = 0; i < 5; ++i) q.value(i) = saved_values[i];
      run(target, 5);
      const std::vector<float> second = q.values();
      EXPECT_EQ(std::memcmp(first.data(), second.data(), first.size() * sizeof(float)), 0)
          << name << (fresh ? " (fresh optimizer)" : " (same optimizer)");
    }
  }
}

TEST(Optim, ErrorsAreReported) {
  expect_throws_with([] { make_optimizer("rmsprop"); },
                     "accepted: sgd, momentum, nesterov, adam, adamw");
  OptimizerOptions decay;
  decay.weight_decay = 1e-4;
  expect_throws_with([&] { make_optimizer("sgd", decay); }, "L2 regularizer");
  OptimizerOptions bad_momentum;
  bad_momentum.momentum = 1.0;
  EXPECT_THROW(make_optimizer("momentum", bad_momentum), ConfigError);
  OptimizerOptions bad_beta;
  bad_beta.beta2 = -0.1;
  EXPECT_THROW(make_optimizer("adam", bad_beta), ConfigError);

  // Two params with one name would share state.
  Param a = scalar_param("same", 1.0f, 1.0f);
  Param b = scalar_param("same", 1.0f, 1.0f);
  std::vector<Param*> twins = {&a, &b};
  auto opt = make_optimizer("momentum");
  EXPECT_THROW(opt->step(twins, 0.1f), ConfigError);
  EXPECT_EQ(a.value[0], 1.0f);  // a failed step changes nothing
  std::vector<Param*> one = {&a};
  EXPECT_NO_THROW(opt->step(one, 0.1f));  // and leaves the optimizer usable
  EXPECT_THROW(opt->step(one, -0.1f), ConfigError);
  EXPECT_THROW(opt->step(one, std::nanf("")), ConfigError);

  // State of another optimizer or another model.
  auto adam = make_optimizer("adam");
  adam->step(one, 0.1f);
  EXPECT_THROW(make_optimizer("momentum")->load_state(adam->state()), ConfigError);
  EXPECT_THROW(make_optimizer("adam")->load_state(OptimizerState{}), ConfigError);
  OptimizerState half = adam->state();
  half.erase("adam_v/same");
  EXPECT_THROW(make_optimizer("adam")->load_state(half), ConfigError);
  auto restored = make_optimizer("adam");
  restored->load_state(adam->state());
  Param wider{"same", Tensor(Shape{1, 2, 1, 1}), Tensor(Shape{1, 2, 1, 1}), true};
  std::vector<Param*> wide = {&wider};
  EXPECT_THROW(restored->step(wide, 0.1f), ShapeError);
}

// ---------------------------------------------------------------------------------------------
// Schedules

double lr_at(const char* spec, double base, double t, int total) {
  const int epoch = static_cast<int>(std::floor(t));
  return parse_schedule(spec).lr(base, epoch, t - epoch, total);
}

TEST(Schedule, ValuesAtGivenEpochs) {
  EXPECT_DOUBLE_EQ(lr_at("constant", 0.3, 17.5, 20), 0.3);

  EXPECT_DOUBLE_EQ(lr_at("step:10:0.1", 1.0, 0.0, 30), 1.0);
  EXPECT_DOUBLE_EQ(lr_at("step:10:0.1", 1.0, 9.9, 30), 1.0);
  EXPECT_NEAR(lr_at("step:10:0.1", 1.0, 10.0, 30), 0.1, 1e-15);
  EXPECT_NEAR(lr_at("step:10:0.1", 1.0, 25.0, 30), 0.01, 1e-15);

  EXPECT_DOUBLE_EQ(lr_at("exp:0.9", 1.0, 0.0, 10), 1.0);
  EXPECT_NEAR(lr_at("exp:0.9", 1.0, 3.5, 10), 0.729, 1e-12);  // per epoch: 0.9^3

  EXPECT_DOUBLE_EQ(lr_at("cosine", 1.0, 0.0, 10), 1.0);
  EXPECT_NEAR(lr_at("cosine", 1.0, 5.0, 10), 0.5, 1e-12);
  EXPECT_NEAR(lr_at("cosine", 1.0, 2.5, 10), 0.8535533905932737, 1e-12);  // within an epoch
  EXPECT_DOUBLE_EQ(lr_at("cosine", 1.0, 10.0, 10), 0.0);
  EXPECT_NEAR(lr_at("cosine:1e-5", 1.0, 5.0, 10), 1e-5 + (1.0 - 1e-5) * 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at("cosine:1e-5", 1.0, 10.0, 10), 1e-5);

  EXPECT_NEAR(lr_at("cyclic:0.1:4", 0.01, 0.0, 20), 0.01, 1e-12);
  EXPECT_NEAR(lr_at("cyclic:0.1:4", 0.01, 1.0, 20), 0.055, 1e-12);
  EXPECT_NEAR(lr_at("cyclic:0.1:4", 0.01, 2.0, 20), 0.1, 1e-12);
  EXPECT_NEAR(lr_at("cyclic:0.1:4", 0.01, 3.0, 20), 0.055, 1e-12);
  EXPECT_NEAR(lr_at("cyclic:0.1:4", 0.01, 4.0, 20), 0.01, 1e-12);
  EXPECT_NEAR(lr_at("cyclic:0.1:4", 0.01, 6.0, 20), 0.1, 1e-12);

  // SGDR, T0 = 10, TMULT = 2: cycles [0, 10), [10, 30), [30, 70).
  EXPECT_DOUBLE_EQ(lr_at("restarts:10:2", 1.0, 0.0, 70), 1.0);
  EXPECT_NEAR(lr_at("restarts:10:2", 1.0, 5.0, 70), 0.5, 1e-12);
  EXPECT_LT(lr_at("restarts:10:2", 1.0, 9.999, 70), 1e-6);
  EXPECT_DOUBLE_EQ(lr_at("restarts:10:2", 1.0, 10.0, 70), 1.0);  // restart
  EXPECT_NEAR(lr_at("restarts:10:2", 1.0, 20.0, 70), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at("restarts:10:2", 1.0, 30.0, 70), 1.0);
  EXPECT_NEAR(lr_at("restarts:10:2", 1.0, 50.0, 70), 0.5, 1e-12);
  EXPECT_NEAR(lr_at("restarts:10:2:0.01", 1.0, 20.0, 70), 0.01 + 0.99 * 0.5, 1e-12);
  // TMULT = 1: the snapshot-ensemble schedule, cycles of 5 epochs.
  EXPECT_NEAR(lr_at("restarts:5:1", 0.2, 7.5, 20), 0.1, 1e-12);
  EXPECT_DOUBLE_EQ(lr_at("restarts:5:1", 0.2, 15.0, 20), 0.2);
}

TEST(Schedule, CycleEnds) {
  using V = std::vector<int>;
  EXPECT_EQ(parse_schedule("restarts:10:2").cycle_ends(70), (V{10, 30, 70}));
  EXPECT_EQ(parse_schedule("restarts:10:2").cycle_ends(69), (V{10, 30}));
  EXPECT_EQ(parse_schedule("restarts:5:1").cycle_ends(20), (V{5, 10, 15, 20}));
  EXPECT_EQ(parse_schedule("restarts:1:2").cycle_ends(16), (V{1, 3, 7, 15}));
  EXPECT_EQ(parse_schedule("cyclic:0.1:4").cycle_ends(10), (V{4, 8}));
  EXPECT_EQ(parse_schedule("cyclic:0.1:1.5").cycle_ends(6), (V{3, 6}));
  EXPECT_EQ(parse_schedule("cosine").cycle_ends(30), (V{30}));
  EXPECT_EQ(parse_schedule("step:10:0.1").cycle_ends(30), (V{30}));
}

TEST(Schedule, ParserRoundTripAndErrors) {
  for (const char* text : {"constant", "step:10:0.1", "exp:0.9", "cosine:0", "cosine:1e-05",
                           "cyclic:0.1:4", "restarts:10:2:0", "restarts:5:1:0.001"}) {
    EXPECT_EQ(print_schedule(parse_schedule(text)), text);
  }
  EXPECT_EQ(parse_schedule("cosine"), parse_schedule("cosine:0"));
  EXPECT_EQ(parse_schedule("restarts:10:2"), parse_schedule("restarts:10:2:0"));
  const Schedule s = parse_schedule("step:10:0.1");
  EXPECT_EQ(s.kind, ScheduleKind::step);
  EXPECT_EQ(s.step_epochs, 10);
  EXPECT_DOUBLE_EQ(s.gamma, 0.1);

  for (const char* bad : {"", "linear", "constant:1", "step", "step:10", "step:0:0.1",
                          "step:2.5:0.1", "step:10:1.5", "step:10:0", "exp", "exp:abc",
                          "exp:0.9:1", "exp:nan", "cosine:-1", "cosine:1:2", "cyclic:0.1",
                          "cyclic:0.1:0", "cyclic:-1:4", "restarts:10", "restarts:10:0",
                          "restarts:0:2", "restarts:10:2:-1", "step:10:0.1 "}) {
    EXPECT_THROW(parse_schedule(bad), ConfigError) << '"' << bad << '"';
  }
  expect_throws_with([] { parse_schedule("linear:3"); }, "\"linear:3\"");
  expect_throws_with([] { parse_schedule("linear:3"); }, "accepted forms: constant | step:K:GAMMA");
  expect_throws_with([] { parse_schedule("step:10"); }, "step takes 2 argument(s), got 1");

  // Rates that do not fit the base rate are caught when computed.
  EXPECT_THROW(parse_schedule("cosine:0.5").lr(0.1, 0, 0.0, 10), ConfigError);
  EXPECT_THROW(parse_schedule("cyclic:0.01:4").lr(0.1, 0, 0.0, 10), ConfigError);
  EXPECT_THROW(parse_schedule("constant").lr(0.1, -1, 0.0, 10), ConfigError);
}

// Budget runs ask the schedule by progress p = t / T: every existing schedule gives, at each
// epoch boundary and mid-epoch, the value the epoch form gives (the form epoch runs use, bit
// for bit, so their results are unchanged), also where p · T rounds below a whole epoch.
TEST(Schedule, ProgressGivesTheEpochValues) {
  for (const char* spec : {"constant", "step:3:0.1", "exp:0.9", "cosine:1e-05", "cyclic:0.1:4",
                           "restarts:2:2:0.001", "restarts:5:1:0"}) {
    for (const int total : {10, 49}) {
      const Schedule s = parse_schedule(spec);
      for (int e = 0; e <= total; ++e) {
        for (const double fraction : {0.0, 0.5}) {
          if (e == total && fraction > 0) continue;
          SCOPED_TRACE(std::string(spec) + " epoch " + std::to_string(e) + " + " +
                       std::to_string(fraction) + " of " + std::to_string(total));
          const double by_epoch = s.lr(0.01, e, fraction, total);
          const double by_progress = s.lr_at(0.01, (e + fraction) / total, total);
          EXPECT_NEAR(by_progress, by_epoch, 1e-12 * 0.1);
        }
      }
    }
  }
  // A fractional length (--budget-epochs 2.5): cosine ends at its floor at p = 1, the step
  // schedule counts the epochs that p · 2.5 has begun.
  EXPECT_EQ(parse_schedule("cosine:0.001").lr_at(0.1, 1.0, 2.5), 0.001);
  EXPECT_DOUBLE_EQ(parse_schedule("step:1:0.5").lr_at(0.1, 0.9, 2.5), 0.025);  // t = 2.25
  EXPECT_THROW(parse_schedule("constant").lr_at(0.1, 1.5, 10), ConfigError);
  EXPECT_THROW(parse_schedule("constant").lr_at(0.1, 0.5, 0), ConfigError);
}

TEST(Schedule, WarmupIsALinearRampOverTheFirstPartOfTheRun) {
  EXPECT_EQ(warmup_factor(0.3, 0.0), 1.0) << "no warm-up: exactly 1, so runs without it are unchanged";
  EXPECT_EQ(warmup_factor(0.0, 0.1), 0.0);
  EXPECT_DOUBLE_EQ(warmup_factor(0.025, 0.1), 0.25);
  EXPECT_DOUBLE_EQ(warmup_factor(0.05, 0.1), 0.5);
  EXPECT_EQ(warmup_factor(0.1, 0.1), 1.0);
  EXPECT_EQ(warmup_factor(0.7, 0.1), 1.0);
  for (int i = 1; i < 10; ++i)
    EXPECT_LT(warmup_factor((i - 1) / 100.0, 0.1), warmup_factor(i / 100.0, 0.1)) << "rising";
  EXPECT_THROW(warmup_factor(0.5, 1.0), ConfigError);
  EXPECT_THROW(warmup_factor(0.5, -0.1), ConfigError);
}

// Smith & Topin's one cycle: base/25 at the start, the peak (base) at p = WARM, a cosine down
// to FLOOR at p = 1, half way at the middle of the descent.
TEST(Schedule, OneCycleShape) {
  const Schedule s = parse_schedule("onecycle:0.3:0.0001");
  const double base = 0.1;
  EXPECT_DOUBLE_EQ(s.lr_at(base, 0.0, 10), base / 25);
  EXPECT_DOUBLE_EQ(s.lr_at(base, 0.15, 10), (base / 25 + base) / 2);
  EXPECT_DOUBLE_EQ(s.lr_at(base, 0.3, 10), base);
  EXPECT_DOUBLE_EQ(s.lr_at(base, 0.65, 10), (base + 0.0001) / 2);
  EXPECT_DOUBLE_EQ(s.lr_at(base, 1.0, 10), 0.0001);
  double previous = 0;
  for (int i = 0; i <= 100; ++i) {
    const double lr = s.lr_at(base, i / 100.0, 10);
    if (i <= 30) {
      EXPECT_GT(lr, previous) << "rising up to p = 0.3, at " << i;
    } else {
      EXPECT_LT(lr, previous) << "falling after, at " << i;
    }
    previous = lr;
  }
  // A function of progress alone: the run's length does not matter; the epoch form agrees.
  EXPECT_DOUBLE_EQ(s.lr_at(base, 0.5, 3), s.lr_at(base, 0.5, 40));
  EXPECT_DOUBLE_EQ(s.lr(base, 2, 0.5, 5), s.lr_at(base, 0.5, 5));

  EXPECT_EQ(print_schedule(parse_schedule("onecycle")), "onecycle:0.3:0");
  EXPECT_EQ(print_schedule(parse_schedule("onecycle:0.25")), "onecycle:0.25:0");
  EXPECT_EQ(print_schedule(parse_schedule("onecycle:0.25:1e-05")), "onecycle:0.25:1e-05");
  EXPECT_EQ(parse_schedule("onecycle:0.25:1e-05").cycle_ends(8), std::vector<int>{8});
  for (const char* bad : {"onecycle:1", "onecycle:-0.1", "onecycle:0.3:-1", "onecycle:0.3:0:1", "onecycle:x"})
    EXPECT_THROW(parse_schedule(bad), ConfigError) << '"' << bad << '"';
  EXPECT_THROW(parse_schedule("onecycle:0.3:0.5").lr_at(0.1, 0.5, 10), ConfigError) << "floor above the peak";
  expect_throws_with([] { parse_schedule("onecycle:2"); }, "onecycle[:WARM[:FLOOR]]");
}

}  // namespace
}  // namespace augflow::model
