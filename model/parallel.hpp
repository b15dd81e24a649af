// The fixed-chunk batch-parallel helper of the layers.
//
// Contract: a batch of N samples is cut into chunks whose layout depends only on N (at most
// kMaxChunks chunks of ceil(N / kMaxChunks) samples, the last one possibly shorter), or, in
// training, on the batch's positions and the run's chunk count (BatchPartition). Chunks run in
// parallel with TBB (a simple_partitioner, one task per chunk), each chunk writes only its own
// outputs or its own partial buffer, and the caller adds the partials in a fixed order
// afterwards (statistics in chunk order; weight gradients in a fixed tree over the chunks, see
// sum_chunks). So a layer's results are bit-identical whatever the thread count (see
// PITFALLS.md, "Reproducibility"): no atomic float adds, no reduction whose shape depends on
// the scheduler.
//
// Floating-point mode: the chunks run with the mode of the thread that calls for_each_chunk
// (captured into their task_group_context), whichever thread runs them, so a worker thread's
// own mode never changes a result. Training runs under FlushDenormals.
//
// Data-parallel training keeps the contract across processes: a BatchPartition tells the layers
// which chunks of the global batch this process holds, and the chunk partials of the others
// arrive through a ChunkExchange, to be added in the same order.
//
// API: internal to augflow::model; not installed.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <functional>
#include <vector>

#include "model/tensor.hpp"  // FloatBuffer

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

class ChunkExchange;

/// How the batch being trained on is cut into chunks when that is not the uniform layout, and
/// where its other chunks are. Data-parallel training spreads the chunks of each global batch
/// over processes: this process holds chunks [first, first + held()) of `chunks`, as consecutive
/// samples of its local tensor; a chunk may also have lost samples (unusable files), so its
/// bounds are explicit. The trainer builds one per step and activates it with PartitionScope.
struct BatchPartition {
  int chunks = 0;            ///< chunks of the whole (global) batch
  int first = 0;             ///< the first chunk held here
  std::vector<int> bounds;   ///< held chunk i covers local samples [bounds[i], bounds[i + 1])
  std::vector<int> samples;  ///< the sample count of every chunk of the batch (all processes)
  /// Moves per-chunk partials between the processes; null when every chunk is held here.
  ChunkExchange* exchange = nullptr;
  /// With an exchange: process r holds chunks [owners[r], owners[r + 1]) (processes + 1 entries).
  std::vector<int> owners;

  int held() const { return bounds.empty() ? 0 : static_cast<int>(bounds.size()) - 1; }
  int local_samples() const { return bounds.empty() ? 0 : bounds.back(); }
  /// Samples of the whole batch (the divisor of a mean over the batch).
  int total_samples() const {
    int total = 0;
    for (int s : samples) total += s;
    return total;
  }
};

/// Gathers per-chunk partial results from the processes that hold a batch's chunks, so that every
/// process can combine all chunks in chunk order (the same additions as one process would make).
/// Implemented over the job's communicator (pipeline); calls come from the thread that runs the
/// layer's forward or backward, never from inside a parallel region.
class ChunkExchange {
 public:
  virtual ~ChunkExchange() = default;
  /// `mine` holds `width` values for each chunk held here (in chunk order); `all` receives
  /// `width` values for every chunk of the batch, in chunk order.
  virtual void gather(const float* mine, std::size_t width, float* all) = 0;
  virtual void gather(const double* mine, std::size_t width, double* all) = 0;
  /// A reduce-scatter and an all-gather: the values are cut into one slice per process; process
  /// r receives slice r of every process's `nodes_per_rank[q]` partial sums (`mine`: this
  /// process's, `width` floats each), in process order, and `combine(nodes, slice, out)` adds
  /// them into its slice of the result; `sums` (width floats) receives every process's slice.
  virtual void reduce(const float* mine, std::size_t width, const std::vector<std::size_t>& nodes_per_rank,
                      const std::function<void(const float* nodes, std::size_t slice, float* out)>& combine,
                      float* sums) = 0;
};

/// The partition active on this thread (null: the uniform layout of every batch).
const BatchPartition* active_partition();

/// Makes `partition` the layout of batches of partition.local_samples() samples that this thread
/// runs through layers, while the scope lives. Layers compute their ChunkLayout on the calling
/// thread (not inside their parallel regions), so they all see it.
class PartitionScope {
 public:
  explicit PartitionScope(const BatchPartition& partition);
  ~PartitionScope();
  PartitionScope(const PartitionScope&) = delete;
  PartitionScope& operator=(const PartitionScope&) = delete;

 private:
  const BatchPartition* saved_;
};

/// The chunks of a batch of `n` samples: chunk i covers samples [begin(i), end(i)).
/// Uniform layout: at most kMaxChunks chunks of ceil(n / kMaxChunks) samples, the last one
/// possibly shorter. Under an active BatchPartition covering n samples, its held chunks.
struct ChunkLayout {
  /// 8 chunks keep 2..8 cores busy; more would only multiply partial-gradient buffers.
  static constexpr int kMaxChunks = 8;
  /// The most chunks a batch may be cut into (a training run's chunks setting, for processes
  /// times cores beyond 8): each chunk held keeps a partial of every parameter gradient.
  static constexpr int kLargestChunkCount = 64;

  int n = 0;      ///< samples
  int count = 0;  ///< chunks

  /// The layout of a batch of `samples` on this thread: the active partition's when it covers
  /// that many samples, else the uniform one.
  explicit ChunkLayout(int samples);
  /// At most `chunks` chunks of ceil(samples / chunks) samples, the last possibly shorter.
  static ChunkLayout uniform(int samples, int chunks = kMaxChunks);

  int begin(int chunk) const { return bounds_[chunk]; }
  int end(int chunk) const { return bounds_[chunk + 1]; }
  /// Whether all of the batch's chunks are here (no partition, or one without an exchange).
  bool whole() const { return partition_ == nullptr || partition_->exchange == nullptr; }
  const BatchPartition* partition() const { return partition_; }

 private:
  ChunkLayout() = default;
  std::array<int, kLargestChunkCount + 1> bounds_{};
  const BatchPartition* partition_ = nullptr;
};

/// `sums` = the sum of per-chunk partials over every chunk of the batch that has samples, added
/// in one fixed order: a binary tree over the chunk indices, ((p0 + p1) + (p2 + p3)) + ...,
/// where a subtree without samples is left out. `partials` holds `width` floats for each chunk
/// of `layout` (the chunks held here; it is overwritten). With an exchange, each process adds the
/// aligned subtrees its chunks make up and sends only those (one to three sums for consecutive
/// chunks, not one per chunk), and the subtrees of all processes are added in the same tree.
void sum_chunks(const ChunkLayout& layout, float* partials, std::size_t width, float* sums);

/// A layer's per-chunk gradient partials (`width` floats per chunk: its weights', then its
/// biases') and their sum over the batch, in buffers kept from step to step.
class ChunkPartials {
 public:
  /// Room for the chunks of `layout`, `width` floats each.
  void reserve(const ChunkLayout& layout, std::size_t width) {
    width_ = width;
    if (parts_.size() < static_cast<std::size_t>(layout.count) * width) parts_.resize(static_cast<std::size_t>(layout.count) * width);
    if (sums_.size() < width) sums_.resize(width);
  }
  float* chunk(int c) { return parts_.data() + static_cast<std::size_t>(c) * width_; }
  /// sum_chunks over the batch (the partials are overwritten); valid until the next call.
  const float* sum(const ChunkLayout& layout) {
    sum_chunks(layout, parts_.data(), width_, sums_.data());
    return sums_.data();
  }

 private:
  std::size_t width_ = 0;
  FloatBuffer parts_, sums_;
};

/// Every chunk's `width` values in chunk order, from the chunks of `layout` (held here) and,
/// through the exchange, the others'. Without a partition: `mine` itself.
std::vector<double> all_chunks(const ChunkLayout& layout, const std::vector<double>& mine, std::size_t width);

/// The sample count of every chunk of the batch (in chunk order).
std::vector<int> chunk_samples(const ChunkLayout& layout);

/// Runs body(chunk, begin, end) for every chunk of a batch of `n` samples. `work` is a rough
/// count of floats touched: below a threshold the chunks run serially, in order, on the
/// calling thread (task overhead would dominate). Serial or parallel, each chunk computes the
/// same thing, so the choice never changes a result.
/// Chunks without samples (a partition's chunk whose files were all unusable) are skipped.
template <typename Body>
void for_each_chunk(int n, std::size_t work, Body&& body) {
  const ChunkLayout layout(n);
  constexpr std::size_t kParallelWork = std::size_t{1} << 15;
  if (layout.count <= 1 || work < kParallelWork) {
    for (int c = 0; c < layout.count; ++c)
      if (layout.end(c) > layout.begin(c)) body(c, layout.begin(c), layout.end(c));
    return;
  }
  tbb::task_group_context context;  // the caller's floating-point mode, for every chunk
  context.capture_fp_settings();
  tbb::parallel_for(
      tbb::blocked_range<int>(0, layout.count, 1),
      [&](const tbb::blocked_range<int>& r) {
        for (int c = r.begin(); c < r.end(); ++c)
          if (layout.end(c) > layout.begin(c)) body(c, layout.begin(c), layout.end(c));
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
