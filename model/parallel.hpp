// The fixed-chunk batch-parallel helper of the layers.
//
// Contract: a batch of N samples is cut into chunks whose layout depends only on N (at most
// kMaxChunks chunks of ceil(N / kMaxChunks) samples, the last one possibly shorter). Chunks run
// in parallel with TBB (a simple_partitioner, one task per chunk), each chunk writes only its
// own outputs or its own partial-gradient buffer, and the caller adds the partial sums in chunk
// order afterwards. So a layer's results are bit-identical whatever the thread count (see
// PITFALLS.md, "Reproducibility"): no atomic float adds, no reduction whose shape depends on
// the scheduler.
#pragma once

#include <algorithm>
#include <cstddef>

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>

namespace augflow::model {

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
  tbb::parallel_for(
      tbb::blocked_range<int>(0, layout.count, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int c = r.begin(); c < r.end(); ++c) body(c, layout.begin(c), layout.end(c));
      },
      tbb::simple_partitioner());
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
  tbb::parallel_for(tbb::blocked_range<int>(0, count),
                    [&](const tbb::blocked_range<int>& r) { body(r.begin(), r.end()); });
}

}  // namespace augflow::model
