#include "model/pool.hpp"

#include <algorithm>
#include <bit>
#include <cstdint>

#include "common/error.hpp"
#include "model/parallel.hpp"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace augflow::model {
namespace {

/// Output size of K x K windows at stride S over an input padded by P on every side.
Shape window_output(const std::string& token, int k, int s, int p, const Shape& in) {
  if (in.h + 2 * p < k || in.w + 2 * p < k)
    throw ShapeError(token + ": input " + in.str() + " is smaller than the " + std::to_string(k) + "x" +
                     std::to_string(k) + " window" + (p > 0 ? " (with padding " + std::to_string(p) + ")" : ""));
  return {in.n, in.c, (in.h + 2 * p - k) / s + 1, (in.w + 2 * p - k) / s + 1};
}

/// The input positions [lo, hi) under output position o: the window o * s - p + [0, k) clipped
/// to [0, size). The clipped part is padding, which never wins a max (-infinity); P <= K / 2
/// keeps [lo, hi) non-empty.
void window_span(int o, int k, int s, int p, int size, int& lo, int& hi) {
  const int start = o * s - p;
  lo = std::max(start, 0);
  hi = std::min(start + k, size);
}

/// The offset in `plane` (h x w) of the first maximum, in raster order, of output (oh, ow)'s
/// window: the reference of MaxPool's forward (its value) and backward (where dy goes).
/// "x > best" keeps the first of equal values, as std::max(best, x) does in the fast path and
/// PyTorch's CPU kernel does.
std::size_t first_max(const float* plane, int h, int w, int k, int s, int p, int oh, int ow) {
  int r0, r1, c0, c1;
  window_span(oh, k, s, p, h, r0, r1);
  window_span(ow, k, s, p, w, c0, c1);
  std::size_t best = static_cast<std::size_t>(r0) * w + c0;
  float v = plane[best];
  for (int r = r0; r < r1; ++r)
    for (int c = c0; c < c1; ++c) {
      const std::size_t at = static_cast<std::size_t>(r) * w + c;
      if (plane[at] > v) {
        v = plane[at];
        best = at;
      }
    }
  return best;
}

}  // namespace

MaxPool::MaxPool(const Shape& in, int k, int stride, int pad) : k_(k), s_(stride), p_(pad) {
  if (k_ < 1) throw SpecError(spec() + ": the window size must be at least 1", spec());
  if (s_ < 1) throw SpecError(spec() + ": the stride must be at least 1", spec());
  if (p_ < 0) throw SpecError(spec() + ": the padding must be at least 0", spec());
  if (p_ > k_ / 2)
    throw SpecError(spec() + ": the padding " + std::to_string(p_) + " is more than half the " + std::to_string(k_) +
                        "x" + std::to_string(k_) + " window; at most " + std::to_string(k_ / 2) +
                        " (K/2 rounded down, as in PyTorch's MaxPool2d): lower p or widen the window",
                    spec());
  window_output(spec(), k_, s_, p_, in);
}

std::string MaxPool::spec() const {
  std::string s = "pool" + std::to_string(k_);
  // Appended piecewise: GCC 12 warns (-Wrestrict, a false positive) on "s" + to_string(...).
  if (s_ != k_) s.append("s").append(std::to_string(s_));
  if (p_ != 0) s.append("p").append(std::to_string(p_));
  return s;
}

Shape MaxPool::output_shape(const Shape& in) const { return window_output(spec(), k_, s_, p_, in); }

void MaxPool::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  if (fast()) return forward_fast(x, y);
  const Shape in = x.shape();
  const Shape out = output_shape(in);
  y.resize(out);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i)
      for (int c = 0; c < in.c; ++c) {
        const float* plane = x.sample(i) + static_cast<std::size_t>(c) * in.h * in.w;
        float* o = y.sample(i) + static_cast<std::size_t>(c) * out.h * out.w;
        for (int oh = 0; oh < out.h; ++oh)
          for (int ow = 0; ow < out.w; ++ow)
            o[oh * out.w + ow] = plane[first_max(plane, in.h, in.w, k_, s_, p_, oh, ow)];
      }
  });
}

void MaxPool::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  if (fast()) return backward_fast(x, y, dy, dx);
  const Shape in = x.shape();
  const Shape out = dy.shape();
  dx.resize(in);
  // Overlapping windows may share their maximum: its gradients add, in raster order of the
  // outputs (one sample per task, so the order never depends on the threads).
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      float* dxs = dx.sample(i);
      std::fill(dxs, dxs + in.per_sample(), 0.0f);
      for (int c = 0; c < in.c; ++c) {
        const std::size_t plane_offset = static_cast<std::size_t>(c) * in.h * in.w;
        const float* plane = x.sample(i) + plane_offset;
        float* dplane = dxs + plane_offset;
        const float* g = dy.sample(i) + static_cast<std::size_t>(c) * out.h * out.w;
        for (int oh = 0; oh < out.h; ++oh)
          for (int ow = 0; ow < out.w; ++ow)
            dplane[first_max(plane, in.h, in.w, k_, s_, p_, oh, ow)] += g[oh * out.w + ow];
      }
    }
  });
}

void MaxPool::forward_fast(const Tensor& x, Tensor& y) const {
  const Shape in = x.shape();
  const Shape out = output_shape(in);
  y.resize(out);
  const int k = k_;
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const float* __restrict xs = x.sample(i);
      float* __restrict ys = y.sample(i);
      for (int c = 0; c < in.c; ++c) {
        for (int oh = 0; oh < out.h; ++oh) {
          const float* __restrict top = xs + (c * in.h + oh * k) * in.w;
          float* __restrict o = ys + (c * out.h + oh) * out.w;
          if (k == 2) {
            const float* __restrict next = top + in.w;
            for (int ow = 0; ow < out.w; ++ow)
              o[ow] = std::max(std::max(top[2 * ow], top[2 * ow + 1]),
                               std::max(next[2 * ow], next[2 * ow + 1]));
            continue;
          }
          for (int ow = 0; ow < out.w; ++ow) {
            float v = top[ow * k];
            for (int di = 0; di < k; ++di)
              for (int dj = 0; dj < k; ++dj) v = std::max(v, top[di * in.w + ow * k + dj]);
            o[ow] = v;
          }
        }
      }
    }
  });
}

namespace {

/// The gradient of one output row of a 2x2 max pool, eight outputs (sixteen input columns) at a
/// time with AVX2: the same selects as the scalar loop in backward_fast (equality on the bits,
/// the first matching element of the window in raster order takes the gradient), so the same
/// bits. Returns how many outputs it did (a multiple of 8); the caller does the rest.
int pool2_backward_row_avx2(const float* __restrict x0, const float* __restrict x1, const float* __restrict v,
                            const float* __restrict g, float* __restrict d0, float* __restrict d1, int outputs) {
  int ow = 0;
#if defined(__AVX2__)
  // Even and odd elements of 16 consecutive floats, each in order: within-lane shuffles, then
  // the 64-bit blocks put back in order (0, 2, 1, 3).
  const auto evens = [](__m256 lo, __m256 hi) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
  };
  const auto odds = [](__m256 lo, __m256 hi) {
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
  };
  const auto equal_bits = [](__m256 a, __m256i m) {
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_castps_si256(a), m));
  };
  // Interleaves a (even columns) and b (odd columns) into 16 floats at `to`.
  const auto store_pairs = [](float* to, __m256 a, __m256 b) {
    const __m256 low = _mm256_unpacklo_ps(a, b), high = _mm256_unpackhi_ps(a, b);
    _mm256_storeu_ps(to, _mm256_permute2f128_ps(low, high, 0x20));
    _mm256_storeu_ps(to + 8, _mm256_permute2f128_ps(low, high, 0x31));
  };
  for (; ow + 8 <= outputs; ow += 8) {
    const int j = 2 * ow;
    const __m256 top_lo = _mm256_loadu_ps(x0 + j), top_hi = _mm256_loadu_ps(x0 + j + 8);
    const __m256 bottom_lo = _mm256_loadu_ps(x1 + j), bottom_hi = _mm256_loadu_ps(x1 + j + 8);
    const __m256i m = _mm256_castps_si256(_mm256_loadu_ps(v + ow));
    const __m256 a = equal_bits(evens(top_lo, top_hi), m);
    const __m256 b = equal_bits(odds(top_lo, top_hi), m);
    const __m256 c = equal_bits(evens(bottom_lo, bottom_hi), m);
    __m256 left = _mm256_loadu_ps(g + ow);
    const __m256 da = _mm256_and_ps(a, left);
    left = _mm256_andnot_ps(a, left);
    const __m256 db = _mm256_and_ps(b, left);
    left = _mm256_andnot_ps(b, left);
    const __m256 dc = _mm256_and_ps(c, left);
    left = _mm256_andnot_ps(c, left);
    store_pairs(d0 + j, da, db);
    store_pairs(d1 + j, dc, left);
  }
#else
  (void)x0, (void)x1, (void)v, (void)g, (void)d0, (void)d1, (void)outputs;
#endif
  return ow;
}

}  // namespace

void MaxPool::backward_fast(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) const {
  const Shape in = x.shape();
  const Shape out = dy.shape();
  dx.resize(in);
  const int k = k_;
  // The gradient goes to the first element of each window (raster order) that equals the
  // window's output; every other element, and the rows and columns left over when the size is
  // not a multiple of k, get 0. Selects rather than branches: which element wins is random.
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const float* __restrict xs = x.sample(i);
      const float* __restrict ys = y.sample(i);
      const float* __restrict gs = dy.sample(i);
      float* __restrict dxs = dx.sample(i);
      if (in.h % k != 0 || in.w % k != 0) std::fill(dxs, dxs + in.per_sample(), 0.0f);
      for (int c = 0; c < in.c; ++c) {
        for (int oh = 0; oh < out.h; ++oh) {
          const std::size_t top = static_cast<std::size_t>(c * in.h + oh * k) * in.w;
          const float* __restrict v = ys + (c * out.h + oh) * out.w;
          const float* __restrict g = gs + (c * out.h + oh) * out.w;
          if (k == 2) {
            const float* __restrict x0 = xs + top;
            const float* __restrict x1 = x0 + in.w;
            float* __restrict d0 = dxs + top;
            float* __restrict d1 = d0 + in.w;
            for (int ow = pool2_backward_row_avx2(x0, x1, v, g, d0, d1, out.w); ow < out.w; ++ow) {
              const int j = 2 * ow;
              // The output is a copy of one of the window's floats, so "equal" is compared on
              // the bits: integer selects, no unordered-compare branches. `left` is the
              // gradient not yet given to an earlier element of the window.
              const std::uint32_t m = std::bit_cast<std::uint32_t>(v[ow]);
              const bool a = std::bit_cast<std::uint32_t>(x0[j]) == m;
              const bool b = std::bit_cast<std::uint32_t>(x0[j + 1]) == m;
              const bool cc = std::bit_cast<std::uint32_t>(x1[j]) == m;
              float left = g[ow];
              d0[j] = a ? left : 0.0f;
              left = a ? 0.0f : left;
              d0[j + 1] = b ? left : 0.0f;
              left = b ? 0.0f : left;
              d1[j] = cc ? left : 0.0f;
              left = cc ? 0.0f : left;
              d1[j + 1] = left;  // nothing earlier matched: the last element is the maximum
            }
            continue;
          }
          for (int ow = 0; ow < out.w; ++ow) {
            bool found = false;
            for (int di = 0; di < k; ++di) {
              for (int dj = 0; dj < k; ++dj) {
                const std::size_t at = top + di * in.w + ow * k + dj;
                const bool wins = !found && xs[at] == v[ow];
                dxs[at] = wins ? g[ow] : 0.0f;
                found = found || wins;
              }
            }
          }
        }
      }
    }
  });
}

AvgPool::AvgPool(const Shape& in, int k) : k_(k) {
  if (k_ < 1) throw SpecError(spec() + ": the window size must be at least 1", spec());
  window_output(spec(), k_, k_, 0, in);
}

Shape AvgPool::output_shape(const Shape& in) const { return window_output(spec(), k_, k_, 0, in); }

void AvgPool::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  const Shape in = x.shape();
  const Shape out = output_shape(in);
  y.resize(out);
  const int k = k_;
  const float scale = 1.0f / static_cast<float>(k * k);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      const float* xs = x.sample(i);
      float* ys = y.sample(i);
      for (int c = 0; c < in.c; ++c)
        for (int oh = 0; oh < out.h; ++oh)
          for (int ow = 0; ow < out.w; ++ow) {
            float sum = 0.0f;
            for (int di = 0; di < k; ++di) {
              const float* row = xs + (c * in.h + oh * k + di) * in.w + ow * k;
              for (int dj = 0; dj < k; ++dj) sum += row[dj];
            }
            ys[(c * out.h + oh) * out.w + ow] = sum * scale;
          }
    }
  });
}

void AvgPool::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  const Shape in = x.shape();
  const Shape out = dy.shape();
  dx.resize(in);
  const int k = k_;
  const float scale = 1.0f / static_cast<float>(k * k);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i) {
      float* dxs = dx.sample(i);
      std::fill(dxs, dxs + in.per_sample(), 0.0f);
      const float* dys = dy.sample(i);
      for (int c = 0; c < in.c; ++c)
        for (int oh = 0; oh < out.h; ++oh)
          for (int ow = 0; ow < out.w; ++ow) {
            const float g = dys[(c * out.h + oh) * out.w + ow] * scale;
            for (int di = 0; di < k; ++di) {
              float* row = dxs + (c * in.h + oh * k + di) * in.w + ow * k;
              for (int dj = 0; dj < k; ++dj) row[dj] = g;
            }
          }
    }
  });
}

Shape GlobalAvgPool::output_shape(const Shape& in) const {
  if (in.c < 1 || in.h < 1 || in.w < 1) throw ShapeError("gap: empty input " + in.str());
  return {in.n, in.c, 1, 1};
}

void GlobalAvgPool::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  const Shape in = x.shape();
  y.resize(output_shape(in));
  const int hw = in.h * in.w;
  const float scale = 1.0f / static_cast<float>(hw);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i)
      for (int c = 0; c < in.c; ++c) {
        const float* plane = x.sample(i) + static_cast<std::size_t>(c) * hw;
        float sum = 0.0f;
        for (int j = 0; j < hw; ++j) sum += plane[j];
        y.sample(i)[c] = sum * scale;
      }
  });
}

void GlobalAvgPool::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  const Shape in = x.shape();
  dx.resize(in);
  const int hw = in.h * in.w;
  const float scale = 1.0f / static_cast<float>(hw);
  for_each_chunk(in.n, x.size(), [&](int, int begin, int end) {
    for (int i = begin; i < end; ++i)
      for (int c = 0; c < in.c; ++c) {
        float* plane = dx.sample(i) + static_cast<std::size_t>(c) * hw;
        std::fill(plane, plane + hw, dy.sample(i)[c] * scale);
      }
  });
}

Shape Flatten::output_shape(const Shape& in) const {
  return {in.n, static_cast<int>(in.per_sample()), 1, 1};
}

void Flatten::forward(const Tensor& x, Tensor& y, const ForwardContext& ctx) {
  (void)ctx;
  y.resize(output_shape(x.shape()));
  std::copy(x.data(), x.data() + x.size(), y.data());
}

void Flatten::backward(const Tensor& x, const Tensor& y, const Tensor& dy, Tensor& dx) {
  (void)y;
  dx.resize(x.shape());
  std::copy(dy.data(), dy.data() + dy.size(), dx.data());
}

}  // namespace augflow::model
