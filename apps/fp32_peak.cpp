#include "apps/fp32_peak.hpp"

#include <algorithm>
#include <ctime>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

namespace augflow::apps {
namespace {

#if defined(__AVX512F__)
using Vec = __m512;
constexpr int kLanes = 16;
inline Vec splat(float x) { return _mm512_set1_ps(x); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
inline float first(Vec v) { return _mm512_cvtss_f32(v); }
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
constexpr int kLanes = 8;
inline Vec splat(float x) { return _mm256_set1_ps(x); }
inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
inline float first(Vec v) { return _mm256_cvtss_f32(v); }
#else
using Vec = float;
constexpr int kLanes = 1;
inline Vec splat(float x) { return x; }
inline Vec fma(Vec a, Vec b, Vec c) { return a * b + c; }
inline float first(Vec v) { return v; }
#endif

double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

/// FMAs per CPU second of one thread (CPU time: other processes on a shared machine take turns
/// on the core, not FMA slots from it): 12 independent chains (named, so they stay in registers).
double fma_rate(long iterations) {
  const Vec b = splat(0.999999f), c = splat(1e-6f);
  Vec a0 = splat(0), a1 = splat(1), a2 = splat(2), a3 = splat(3), a4 = splat(4), a5 = splat(5);
  Vec a6 = splat(6), a7 = splat(7), a8 = splat(8), a9 = splat(9), a10 = splat(10), a11 = splat(11);
  const double start = thread_cpu_seconds();
  for (long i = 0; i < iterations; ++i) {
    a0 = fma(a0, b, c), a1 = fma(a1, b, c), a2 = fma(a2, b, c), a3 = fma(a3, b, c);
    a4 = fma(a4, b, c), a5 = fma(a5, b, c), a6 = fma(a6, b, c), a7 = fma(a7, b, c);
    a8 = fma(a8, b, c), a9 = fma(a9, b, c), a10 = fma(a10, b, c), a11 = fma(a11, b, c);
  }
  const double seconds = thread_cpu_seconds() - start;
  volatile float sink = first(a0) + first(a1) + first(a2) + first(a3) + first(a4) + first(a5) + first(a6) +
                        first(a7) + first(a8) + first(a9) + first(a10) + first(a11);
  (void)sink;
  return 12.0 * kLanes * iterations / seconds;
}

/// FMA instructions per cycle of one core at the build's vector width.
int fma_per_cycle() {
  int per_cycle = 2;  // two FMA pipes
#if defined(__x86_64__) && defined(__AVX512F__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0, &eax, &ebx, &ecx, &edx) && ebx == 0x68747541 /* "Auth"enticAMD */ &&
      __get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
    const unsigned family = ((eax >> 8) & 0xf) + ((eax >> 20) & 0xff);
    if (family == 0x19) per_cycle = 1;  // Zen 4: 512-bit FMAs as two halves on 256-bit pipes
  }
#endif
  return per_cycle;
}

}  // namespace

Fp32Peak measure_fp32_peak(int threads) {
  Fp32Peak peak;
  peak.threads = threads;
  peak.lanes = kLanes;
  peak.flop_per_cycle = kLanes * fma_per_cycle() * 2;
  constexpr long kIterations = 4'000'000;  // about 20 ms per run at 3 GHz
  // Each thread's best of 5 runs, summed.
  std::vector<double> rates(threads, 0.0);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&rates, t] {
      for (int run = 0; run < 5; ++run) rates[t] = std::max(rates[t], fma_rate(kIterations));
    });
  for (auto& t : pool) t.join();
  for (double r : rates) peak.gflops += 2.0 * r / 1e9;
  return peak;
}

}  // namespace augflow::apps
