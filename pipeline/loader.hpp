// The streaming loader: a oneTBB flow graph that turns a data set into ordered batches.
//
//   source (the epoch's order) -> limiter (tokens) -> decode (parallel) -> augment (parallel)
//     -> sequencer (restores sample order) -> batch assembler (serial) -> consumer (next())
//
// While the consumer trains on batch k, batches k+1.. are decoded and augmented. A token is
// taken when a sample enters the graph and given back when next() hands the batch that holds
// it to the consumer, so at most `tokens()` samples are inside the graph or its queue of ready
// batches. Peak memory is therefore bounded by configuration, not by the data set:
//
//   tokens x (decoded image bytes + augmented sample bytes)       samples in flight
//   + (2 x prefetch_batches + 1 + held) x batch_size x C x H x W x 4  batch buffers
//   + cache_mb                                                      optional decoded-image cache
//
// where `held` is the number of batches the consumer keeps alive at once (normally 1); a
// released batch's buffer is reused. The factor 2: at an epoch boundary the next epoch starts
// streaming (prefetch_next_epoch) while up to prefetch_batches batches of the finished one
// still wait for the consumer.
//
// where tokens = prefetch_batches x batch_size; a decoded image is at most the JPEG region the
// crop keeps (whole image for other formats), 3 bytes a pixel, and at most --max-pixels.
//
// Reproducibility: sample i of epoch e is augmented with the key (seed, e, i) and batch k holds
// the k-th slice of the epoch's order, so batches are bit-identical for the same seed whatever
// the thread count. Unusable samples (undecodable, truncated, too large, unreadable) are
// reported once, dropped from their batch (which is then smaller) and excluded from later
// epochs. With `strict`, the first one ends the run with its error instead.
// Errors inside a node end the run: next() rethrows them; nothing hangs. stop() (early
// stopping, Ctrl-C) cancels the graph and joins it.
//
// Shares (data-parallel training, LoaderOptions::batch_share): the global batching stays what it
// is without a share. The epoch's order (epoch_order with the exclusions, then drop_last) is cut
// into global batches of batch_size positions, batch k covering positions [k*B, min((k+1)*B, L)),
// L = epoch_positions(epoch). A share is a pure function that names, for a batch of P positions,
// the positions [begin, end) of it this loader loads; the others' files are never touched. Each
// delivered Batch is the share's part of global batch k: index() is k, positions() the global
// batch's positions of its rows (in increasing order, gaps where a sample was unusable),
// batch_positions() is P. A batch whose share is empty, or whose shared samples were all
// unusable, is not delivered: the consumer sees the gap in index(). A sample's row is the same
// bytes as without a share (its key is (seed, epoch, sample index)); loaders whose shares
// partition [0, P) give, batch by batch and concatenated in share order, the unshared batch.
// Tokens, memory bounds, resume (start_epoch's first_batch is a global batch), bad files, views,
// the cache, inline loading and the early start of the next epoch work as without a share.
// Several processes stay in step only while their orders agree: each finds only the bad files
// of its own shares, so the caller makes their exclusions equal before an epoch's order is
// fixed (exchange bad_files() and mark_unusable() the union, with prefetch_next_epoch off: an
// early start fixes the next order from this process's bad files alone); epoch_positions()
// then agrees too.
//
// API: public, part of augflow::loader; installed as <augflow/pipeline/loader.hpp>.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include <oneapi/tbb/task_arena.h>

#include "augflow/augment/pipeline.hpp"
#include "augflow/pipeline/dataset.hpp"
#include "augflow/pipeline/image_cache.hpp"
#include "augflow/pipeline/report.hpp"
#include "augflow/pipeline/sampler.hpp"

namespace augflow::pipeline {

struct LoaderOptions {
  int batch_size = 64;
  int threads = 2;           ///< threads of the loader's arena (decode and augment)
  int prefetch_batches = 4;  ///< tokens = prefetch_batches * batch_size samples in flight
  bool shuffle = true;
  bool drop_last = false;    ///< leave out the epoch's last, partial batch
  std::uint64_t seed = 0;
  Shard shard;
  std::int64_t max_pixels = augment::kDefaultMaxPixels;
  bool strict = false;       ///< the first unusable sample is an error, not a skip
  std::size_t cache_mb = 0;  ///< keep decoded (not augmented) images up to this size; 0 = off
  /// A decoded-image cache shared with other loaders (a search's trials); replaces cache_mb's
  /// own cache. Same bytes as cache_mb's: whole images, then the transforms.
  std::shared_ptr<ImageCache> shared_cache;
  /// Start streaming epoch e+1 as soon as every sample of epoch e is processed (its order is
  /// fixed then), so the pipeline does not drain at epoch boundaries. Wasted work only if the
  /// caller then asks for an epoch other than e+1.
  bool prefetch_next_epoch = true;
  /// The last epoch the caller will ask for: nothing is prefetched beyond it.
  std::uint64_t last_epoch = ~0ull;
  /// Decode and augment on the consumer's thread, inside next(), in sample order, instead of
  /// in the flow graph on a thread of its own: for a consumer that has one core to itself (a
  /// search trial when --parallel equals --threads), where a loader thread could only take
  /// turns with it and the graph's per-sample hand-offs are pure cost. Batches, skips and
  /// errors are the same bytes and counts either way; nothing is prefetched.
  bool inline_loading = false;
  /// Test-time views (augflow eval). When set, each sample is decoded once (whole image),
  /// padded by `view_pad` pixels (constant 0) when that is positive, and becomes
  /// views->views.count() consecutive rows of its batch, in the views' documented order,
  /// normalised by views->normalize. The pipeline's transforms are then not applied: give a
  /// normalize-only pipeline. A batch of batch_size samples holds batch_size x views rows.
  std::shared_ptr<const augment::ViewPipeline> views;
  int view_pad = 0;
  /// Data-parallel training: which positions of each batch this loader loads. Given the number of
  /// positions P of a batch (batch_size, or fewer for an epoch's last batch), returns [begin, end) with
  /// 0 <= begin <= end <= P. Must be a pure function. Empty: the whole batch.
  /// (An answer outside [0, P] is a ConfigError from start_epoch, or from next() when it starts
  /// the next epoch early.) See the header comment.
  std::function<std::pair<std::size_t, std::size_t>(std::size_t positions)> batch_share;
};

/// The shape every sample of a batch has.
struct SampleShape {
  int channels = 0;
  int height = 0;
  int width = 0;
  std::size_t floats() const { return static_cast<std::size_t>(channels) * height * width; }
  bool operator==(const SampleShape&) const = default;
};

struct BatchStorage;
class EpochRun;

/// A batch: float32 NCHW data, labels and data-set indices of its samples. Move-only; its
/// destructor gives the buffer back to the loader for reuse.
class Batch {
 public:
  Batch(std::unique_ptr<BatchStorage> storage, std::shared_ptr<EpochRun> run);
  Batch(Batch&&) noexcept;
  Batch& operator=(Batch&&) noexcept;
  ~Batch();

  int size() const;                ///< samples (images)
  int views() const;               ///< rows per sample: 1, or the test-time views per image
  const SampleShape& shape() const;
  const float* data() const;       ///< size() x views() rows of shape() floats, view-major per sample
  std::span<const int> labels() const;
  std::span<const std::uint64_t> sample_ids() const;
  std::uint64_t epoch() const;
  std::uint64_t index() const;  ///< batch number within the epoch (the global batch, with a share)
  /// For each sample (row group) of the batch, its position within the global batch: 0..batch_positions()-1
  /// (the share's begin added), in increasing order. Rows of unusable samples were squeezed out, so
  /// positions can have gaps.
  std::span<const std::uint32_t> positions() const;
  /// The number of positions of the global batch (batch_size, or fewer for the epoch's last), whatever
  /// the share and the unusable samples.
  std::size_t batch_positions() const;

 private:
  void release();
  std::unique_ptr<BatchStorage> storage_;
  std::shared_ptr<EpochRun> run_;
};

class DecodedCache;

class Loader {
 public:
  /// Throws ConfigError for bad options or a spec whose output size depends on the input.
  Loader(Dataset data, std::shared_ptr<const augment::Pipeline> pipeline, LoaderOptions options,
         WarningSink warn = {});
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  const Dataset& dataset() const { return data_; }
  const SampleShape& sample_shape() const { return shape_; }
  const LoaderOptions& options() const { return options_; }
  std::size_t tokens() const;

  /// Starts streaming `epoch` (stopping the previous one if it is still running; picking up
  /// the early start of epoch e+1 when that is the one asked for). From batch `first_batch` on
  /// for a run resumed mid-epoch: the earlier batches' samples are not loaded, and the later
  /// batches are the same bytes as in a run that streamed the whole epoch.
  void start_epoch(std::uint64_t epoch, std::uint64_t first_batch = 0);
  /// The next batch of the current epoch, or nothing at its end. Rethrows a node's error.
  std::optional<Batch> next();
  /// Ends the current epoch early: cancels the graph, drains and joins it.
  void stop();

  const BadFiles& bad_files() const { return *bad_; }
  /// The samples epoch `epoch`'s order leaves out (or will: everything found unusable so far,
  /// unless that epoch already started early). A resumed run restores exactly this set.
  std::vector<bool> exclusions_for(std::uint64_t epoch) const;
  /// The number of positions L in epoch `epoch`'s order (after exclusions known now and drop_last): the
  /// global batches of that epoch are ceil(L / batch_size). The length of the order start_epoch(epoch)
  /// would stream if called now; for the epoch being streamed or started early (those for which
  /// exclusions_for() answers with a run's set), that run's order length. All shares together.
  std::size_t epoch_positions(std::uint64_t epoch) const;
  /// Marks sample `index` unusable before streaming (a resumed run restores what the
  /// interrupted one found, so its epochs exclude the same samples).
  void mark_unusable(std::size_t index, const std::string& reason) {
    bad_->add(index, data_.describe(index), reason);
  }
  /// Seconds the consumer spent blocked in next() since construction.
  double wait_seconds() const { return wait_seconds_; }
  /// The largest number of samples that were in flight at once (instrumentation for tests).
  std::size_t in_flight_high_water() const;
  /// Bytes held by the decoded-image cache.
  std::size_t cache_bytes() const;

 private:
  Dataset data_;
  std::shared_ptr<const augment::Pipeline> pipeline_;
  LoaderOptions options_;
  SampleShape shape_;
  std::unique_ptr<BadFiles> bad_;
  std::unique_ptr<DecodedCache> cache_;
  std::unique_ptr<tbb::task_arena> arena_;
  std::shared_ptr<EpochRun> run_;
  std::shared_ptr<EpochRun> next_run_;  ///< epoch run_+1, started early (prefetch_next_epoch)

  /// The epoch's global order: epoch_order with `excluded`, then drop_last.
  std::vector<std::uint64_t> global_order(std::uint64_t epoch, const std::vector<bool>& excluded) const;
  std::shared_ptr<EpochRun> make_run(std::uint64_t epoch, std::uint64_t first_batch = 0);
  void retire(std::shared_ptr<EpochRun>& run);
  double wait_seconds_ = 0;
  std::size_t high_water_ = 0;
};

}  // namespace augflow::pipeline
