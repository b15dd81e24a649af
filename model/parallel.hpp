// The fixed-chunk batch-parallel helper of the layers.
//
// Contract: a batch of N samples is cut into chunks whose layout depends only on N (at most
// kMaxChunks chunks of ceil(N / kMaxChunks) samples, the last one possibly shorter). Chunks run
// in parallel with TBB (a simple_partitioner, one task per chunk), each chunk writes only its
// own outputs or its own partial-gradient buffer, and the caller adds the partial sums in chunk
// order afterwards. So a layer's results are bit-identical whatever the thread count (see
// PITFALLS.md, "Reproducibility"): no atomic float adds, no reduction whose shape depends on
// the scheduler.
//
// Floating-point mode: the chunks run with the mode of the thread that calls for_each_chunk
// (captured into their task_group_context), whichever thread runs them, so a worker thread's
// own mode never changes a result. Training runs under FlushDenormals.
//
// API: internal to augflow::model; not installed.
#pragma once

#include <algorithm>
#include <cstddef>

#if defined(__SSE__)
#include <xmmintrin.h>  // the MXCSR register
#endif

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_group.h>

namespace augflow::model {

/// Flush-to-zero and denormals-are-zero on the current thread while it lives (x86: two bits of
/// MXCSR; elsewhere it does nothing), restoring the previous mode after. Weights and Adam moments
/// that decay towards zero (under L2, those of an input that is always 0, such as Fashion-MNIST's
/// border pixels) otherwise spend thousands of steps as subnormal floats, on which every
/// operation takes a slow microcode path: search trials of the two-layer net with such weights
/// took 2-3 times as long. Values below 1.2e-38 become 0, which no accuracy notices (PyTorch's
/// set_flush_denormal, TensorFlow's CPU default).
class FlushDenormals {
 public:
#if defined(__SSE__)
  FlushDenormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushDenormals() { _mm_setcsr(saved_); }
#endif
  FlushDenormals(const FlushDenormals&) = delete;
  FlushDenormals& operator=(const FlushDenormals&) = delete;

 private:
#if defined(__SSE__)
  static constexpr unsigned kFlushToZero = 0x8000;      // MXCSR.FZ
  static constexpr unsigned kDenormalsAreZero = 0x0040; // MXCSR.DAZ
  unsigned saved_;
#endif
};

/// The chunks of a batch of `n` samples: chunk i covers samples [begin(i), end(i)).
struct ChunkLayout {
  /// 8 chunks keep 2..8 cores busy; more would only multiply partial-gradient buffers.
  static constexpr int kMaxChunks = 8;

  int n = 0;      ///< samples
  int size = 0;   ///< samples per chunk (the last may have fewer)
  int count = 0;  ///< chunks

  explicit ChunkLayout(int samples)
      : n(samples),
        size(samples <= 0 ? 1 : (samples + kMaxChunks - 1) / kMaxChunks),
        count(samples <= 0 ? 0 : (samples + size - 1) / size) {}
  int begin(int chunk) const { return chunk * size; }
  int end(int chunk) const { return std::min(n, (chunk + 1) * size); }
};

/// Runs body(chunk, begin, end) for every chunk of a batch of `n` samples. `work` is a rough
/// count of floats touched: below a threshold the chunks run serially, in order, on the
/// calling thread (task overhead would dominate). Serial or parallel, each chunk computes the
/// same thing, so the choice never changes a result.
template <typename Body>
void for_each_chunk(int n, std::size_t work, Body&& body) {
  const ChunkLayout layout(n);
  constexpr std::size_t kParallelWork = std::size_t{1} << 15;
  if (layout.count <= 1 || work < kParallelWork) {
    for (int c = 0; c < layout.count; ++c) body(c, layout.begin(c), layout.end(c));
    return;
  }
  tbb::task_group_context context;  // the caller's floating-point mode, for every chunk
  context.capture_fp_settings();
  tbb::parallel_for(
      tbb::blocked_range<int>(0, layout.count, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int c = r.begin(); c < r.end(); ++c) body(c, layout.begin(c), layout.end(c));
      },
      tbb::simple_partitioner(), context);
}

/// Runs body(begin, end) over [0, count) of independent items (channels, units) in parallel.
/// Only for work whose items do not interact, so the partition cannot change a result.
template <typename Body>
void for_each_range(int count, std::size_t work, Body&& body) {
  constexpr std::size_t kParallelWork = std::size_t{1} << 15;
  if (count <= 1 || work < kParallelWork) {
    if (count > 0) body(0, count);
    return;
  }
  tbb::task_group_context context;  // the caller's floating-point mode, for every range
  context.capture_fp_settings();
  tbb::parallel_for(tbb::blocked_range<int>(0, count),
                    [&](const tbb::blocked_range<int>& r) { body(r.begin(), r.end()); }, tbb::auto_partitioner(),
                    context);
}

}  // namespace augflow::model
