// The conv and fc kernels against naive references (direct loops summed in double) on random
// shapes: odd sizes, strides, padding, tiny channel counts, uneven chunks; and training steps of
// the presets bit-identical for 1, 2 and 4 threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <tbb/global_control.h>
#include <tbb/task_arena.h>

#include "common/rng.hpp"
#include "model/config.hpp"
#include "model/conv.hpp"
#include "model/conv_dnnl.hpp"
#include "model/dense.hpp"
#include "model/loss.hpp"
#include "model/net.hpp"
#include "model/optim.hpp"

namespace augflow::model {
namespace {

Tensor random_tensor(const Shape& shape, std::uint64_t seed) {
  Tensor t(shape);
  Rng rng({seed, 5, 0}, 1);
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return t;
}

struct ConvCase {
  int n, c, h, w, out, k, s, p;
  bool bias;
};

/// Direct convolution in double: y, and for dy the gradients dx, dw, db; plus for each output
/// the sum of |terms| (the scale a float sum's rounding error is relative to).
struct ConvReference {
  std::vector<double> y, y_scale, dx, dx_scale, dw, dw_scale, db, db_scale;
};

ConvReference conv_reference(const ConvCase& k, const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& dy) {
  const int ho = (k.h + 2 * k.p - k.k) / k.s + 1, wo = (k.w + 2 * k.p - k.k) / k.s + 1;
  ConvReference r;
  r.y.assign(static_cast<std::size_t>(k.n) * k.out * ho * wo, 0.0);
  r.y_scale = r.y;
  r.dx.assign(x.size(), 0.0);
  r.dx_scale = r.dx;
  r.dw.assign(w.size(), 0.0);
  r.dw_scale = r.dw;
  r.db.assign(k.out, 0.0);
  r.db_scale = r.db;
  for (int i = 0; i < k.n; ++i)
    for (int o = 0; o < k.out; ++o)
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox) {
          const std::size_t yi = ((static_cast<std::size_t>(i) * k.out + o) * ho + oy) * wo + ox;
          const double g = dy[yi];
          double sum = k.bias ? b[o] : 0.0, scale = k.bias ? std::abs(b[o]) : 0.0;
          for (int c = 0; c < k.c; ++c)
            for (int ky = 0; ky < k.k; ++ky)
              for (int kx = 0; kx < k.k; ++kx) {
                const int iy = oy * k.s - k.p + ky, ix = ox * k.s - k.p + kx;
                if (iy < 0 || iy >= k.h || ix < 0 || ix >= k.w) continue;
                const std::size_t xi = ((static_cast<std::size_t>(i) * k.c + c) * k.h + iy) * k.w + ix;
                const std::size_t wi = ((static_cast<std::size_t>(o) * k.c + c) * k.k + ky) * k.k + kx;
                sum += static_cast<double>(x[xi]) * w[wi];
                scale += std::abs(static_cast<double>(x[xi]) * w[wi]);
                r.dx[xi] += g * w[wi];
                r.dx_scale[xi] += std::abs(g * w[wi]);
                r.dw[wi] += g * x[xi];
                r.dw_scale[wi] += std::abs(g * x[xi]);
              }
          r.y[yi] = sum;
          r.y_scale[yi] = scale;
          r.db[o] += g;
          r.db_scale[o] += std::abs(g);
        }
  return r;
}

/// Every value within a float rounding bound of the reference: 1e-5 of its scale (a float sum
/// of m terms errs by up to about m * 6e-8 of it; m stays below ~170 here) plus a tiny floor.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0.0;
  std::size_t worst_at = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - want[i]) / (scale[i] + 1e-6);
    if (err > worst) worst = err, worst_at = i;
  }
  EXPECT_LE(worst, 1e-5) << what << ": worst at " << worst_at << ", got " << got[worst_at] << ", want "
                         << want[worst_at];
}

std::string name(const ConvCase& k) {
  return "n" + std::to_string(k.n) + " c" + std::to_string(k.c) + " " + std::to_string(k.h) + "x" +
         std::to_string(k.w) + " out" + std::to_string(k.out) + " k" + std::to_string(k.k) + " s" +
         std::to_string(k.s) + " p" + std::to_string(k.p) + (k.bias ? "" : " no bias");
}

std::vector<ConvCase> conv_cases() {
  std::vector<ConvCase> cases = {
      {16, 1, 28, 28, 32, 3, 1, 1, true},   // cnn-small's first layer
      {19, 32, 14, 14, 64, 3, 1, 1, true},  // its second, with uneven chunks
      {9, 16, 14, 14, 32, 1, 2, 0, false},  // a projection shortcut
      {3, 3, 7, 5, 5, 3, 2, 1, true},       // odd sizes
      {2, 2, 9, 11, 3, 5, 3, 2, false},
      {1, 1, 3, 3, 1, 3, 1, 0, true},
  };
  Rng rng({2024, 0, 0}, 3);  // random shapes: odd sizes, strides, padding, tiny channel counts
  for (int i = 0; i < 14; ++i) {
    ConvCase k;
    k.n = static_cast<int>(rng.uniform_int(1, 11));
    k.c = static_cast<int>(rng.uniform_int(1, 20));
    k.k = static_cast<int>(rng.uniform_int(1, 5));
    k.s = static_cast<int>(rng.uniform_int(1, 3));
    k.p = static_cast<int>(rng.uniform_int(0, k.k / 2 + 1));
    k.h = static_cast<int>(rng.uniform_int(std::max(1, k.k - 2 * k.p), 17));
    k.w = static_cast<int>(rng.uniform_int(std::max(1, k.k - 2 * k.p), 17));
    k.out = static_cast<int>(rng.uniform_int(1, 40));
    k.bias = rng.bernoulli(0.5);
    cases.push_back(k);
  }
  return cases;
}

/// Runs one conv forward and backward; `reference` selects the im2col + GEMM path.
void check_conv(const ConvCase& k, bool reference, bool input_gradient) {
  const Shape in{k.n, k.c, k.h, k.w};
  Conv2d conv(in, k.out, k.k, k.s, k.p, k.bias);
  if (reference) conv.use_reference();
  conv.set_input_gradient(input_gradient);
  conv.weight().value = random_tensor(conv.weight().value.shape(), 1);
  if (k.bias) conv.bias().value = random_tensor(conv.bias().value.shape(), 2);
  // Gradients start non-zero: backward must add to them.
  conv.weight().grad = random_tensor(conv.weight().grad.shape(), 3);
  if (k.bias) conv.bias().grad = random_tensor(conv.bias().grad.shape(), 4);
  const std::vector<float> w_grad0 = conv.weight().grad.values();
  const std::vector<float> b_grad0 = k.bias ? conv.bias().grad.values() : std::vector<float>{};
  const Tensor x = random_tensor(in, 5);
  Tensor y, dx;
  conv.forward(x, y, {});
  const Tensor dy = random_tensor(y.shape(), 6);
  conv.backward(x, y, dy, dx);
  if (!reference && DnnlConv::available()) {
    EXPECT_TRUE(conv.fast_path()) << name(k) << ": oneDNN declined";
  }

  const ConvReference r = conv_reference(k, x, conv.weight().value, conv.bias().value, dy);
  const std::string what = name(k) + (reference ? " (im2col)" : " (fast)");
  expect_close(y.values(), r.y, r.y_scale, what + " y");
  if (input_gradient) expect_close(dx.values(), r.dx, r.dx_scale, what + " dx");
  std::vector<float> dw = conv.weight().grad.values();
  for (std::size_t i = 0; i < dw.size(); ++i) dw[i] -= w_grad0[i];
  std::vector<double> dw_scale = r.dw_scale;
  for (std::size_t i = 0; i < dw.size(); ++i) dw_scale[i] += std::abs(w_grad0[i]);
  expect_close(dw, r.dw, dw_scale, what + " dw");
  if (k.bias) {
    std::vector<float> db = conv.bias().grad.values();
    std::vector<double> db_scale = r.db_scale;
    for (std::size_t i = 0; i < db.size(); ++i) db[i] -= b_grad0[i], db_scale[i] += std::abs(b_grad0[i]);
    expect_close(db, r.db, db_scale, what + " db");
  }
}

TEST(ConvKernel, FastPathMatchesTheDirectReference) {
  for (const ConvCase& k : conv_cases()) check_conv(k, false, true);
}

TEST(ConvKernel, Im2colPathMatchesTheDirectReference) {
  for (const ConvCase& k : conv_cases()) check_conv(k, true, true);
}

TEST(ConvKernel, WithoutInputGradientTheWeightGradientsStillMatch) {
  check_conv({16, 1, 28, 28, 16, 3, 1, 1, true}, false, false);  // the first layer: no dx
  check_conv({5, 3, 9, 9, 7, 3, 2, 1, false}, false, false);
}

TEST(ConvKernel, FastPathIsOnWhereOneDnnIsBuiltIn) {
  // The presets' convolutions must not fall back to im2col silently.
  if (!DnnlConv::available()) GTEST_SKIP() << "built without oneDNN";
  for (const ConvCase& k : {ConvCase{128, 1, 28, 28, 32, 3, 1, 1, true}, ConvCase{128, 16, 28, 28, 32, 1, 2, 0, false},
                            ConvCase{128, 64, 7, 7, 64, 3, 1, 1, false}}) {
    Conv2d conv({k.n, k.c, k.h, k.w}, k.out, k.k, k.s, k.p, k.bias);
    Tensor y;
    conv.forward(random_tensor({k.n, k.c, k.h, k.w}, 1), y, {});
    EXPECT_TRUE(conv.fast_path()) << name(k);
  }
}

TEST(DenseKernel, MatchesTheDirectReference) {
  Rng rng({77, 0, 0}, 3);
  for (int t = 0; t < 8; ++t) {
    const int n = static_cast<int>(rng.uniform_int(1, 40)), in = static_cast<int>(rng.uniform_int(1, 300));
    const int out = static_cast<int>(rng.uniform_int(1, 70));
    Dense fc({n, in, 1, 1}, out);
    fc.weight().value = random_tensor(fc.weight().value.shape(), 1);
    fc.bias().value = random_tensor(fc.bias().value.shape(), 2);
    const Tensor x = random_tensor({n, in, 1, 1}, 3);
    Tensor y, dx;
    fc.forward(x, y, {});
    const Tensor dy = random_tensor(y.shape(), 4);
    fc.backward(x, y, dy, dx);
    std::vector<double> ry(static_cast<std::size_t>(n) * out), rys(ry.size()), rdx(x.size()), rdxs(x.size()),
        rdw(fc.weight().value.size()), rdws(rdw.size()), rdb(out), rdbs(out);
    for (int i = 0; i < n; ++i)
      for (int o = 0; o < out; ++o) {
        const double g = dy[static_cast<std::size_t>(i) * out + o];
        double s = fc.bias().value[o], a = std::abs(s);
        for (int j = 0; j < in; ++j) {
          const double xv = x[static_cast<std::size_t>(i) * in + j], wv = fc.weight().value[static_cast<std::size_t>(o) * in + j];
          s += xv * wv, a += std::abs(xv * wv);
          rdx[static_cast<std::size_t>(i) * in + j] += g * wv, rdxs[static_cast<std::size_t>(i) * in + j] += std::abs(g * wv);
          rdw[static_cast<std::size_t>(o) * in + j] += g * xv, rdws[static_cast<std::size_t>(o) * in + j] += std::abs(g * xv);
        }
        ry[static_cast<std::size_t>(i) * out + o] = s, rys[static_cast<std::size_t>(i) * out + o] = a;
        rdb[o] += g, rdbs[o] += std::abs(g);
      }
    const std::string what = "fc n" + std::to_string(n) + " in" + std::to_string(in) + " out" + std::to_string(out);
    expect_close(y.values(), ry, rys, what + " y");
    expect_close(dx.values(), rdx, rdxs, what + " dx");
    expect_close(fc.weight().grad.values(), rdw, rdws, what + " dw");
    expect_close(fc.bias().grad.values(), rdb, rdbs, what + " db");
  }
}

/// Every parameter after three training steps (forward, loss, backward, Adam) of `model` at a
/// batch of `batch`, on `threads` threads.
std::vector<std::vector<float>> train_three_steps(const std::string& model, int batch, int threads) {
  const ModelSpec spec = parse_model_spec(model, 10);
  Net net(spec, {0, 1, 28, 28}, 10);
  net.initialize(3);
  auto optimizer = make_optimizer("adam");
  const Tensor x = random_tensor({batch, 1, 28, 28}, 9);
  std::vector<int> labels(batch);
  for (int i = 0; i < batch; ++i) labels[i] = (i * 7) % 10;
  Tensor dlogits;
  // Without raising the process's limit, a 4-thread arena on a 2-core machine runs 2 threads.
  const tbb::global_control allow(tbb::global_control::max_allowed_parallelism, threads);
  tbb::task_arena arena(threads);
  arena.execute([&] {
    for (std::uint64_t step = 0; step < 3; ++step) {
      const ForwardContext ctx{Mode::train, 1, step, 0, nullptr};
      softmax_cross_entropy(net.forward(x, ctx), labels, dlogits);
      net.backward(dlogits);
      optimizer->step(net.params(), 1e-3f);
    }
  });
  std::vector<std::vector<float>> values;
  for (Param* p : net.params()) values.push_back(p->value.values());
  return values;
}

TEST(Kernels, TrainingStepsBitIdenticalWithOneTwoOrFourThreads) {
  for (const std::string model : {"cnn-small", "resnet-mini"}) {
    for (const int batch : {128, 37}) {  // 37: a shorter last chunk
      const auto one = train_three_steps(model, batch, 1);
      for (const int threads : {2, 4}) {
        const auto many = train_three_steps(model, batch, threads);
        ASSERT_EQ(one.size(), many.size());
        for (std::size_t i = 0; i < one.size(); ++i)
          EXPECT_EQ(one[i], many[i]) << model << ", batch " << batch << ", " << threads << " threads, parameter " << i;
      }
    }
  }
}

}  // namespace
}  // namespace augflow::model
