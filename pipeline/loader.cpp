#include "pipeline/loader.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <iterator>
#include <map>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>

#include <oneapi/tbb/flow_graph.h>
#include <opencv2/core.hpp>

#include "augment/decode.hpp"
#include "common/error.hpp"
#include "common/tsan.hpp"

namespace augflow::pipeline {
namespace flow = tbb::flow;

// ---------------------------------------------------------------------------------------------
// Batch storage and the decoded-image cache

/// Where a run's positions fall in the epoch's global batches: the part of global batch `index`
/// that the run loads is its positions [first, first + count), which are the global batch's
/// positions [share_begin, share_begin + count) of `positions`.
struct BatchSlice {
  std::uint64_t index = 0;        ///< global batch number k
  std::uint64_t first = 0;        ///< the run's position of the slice's first sample
  std::size_t count = 0;          ///< positions the run loads (> 0)
  std::uint32_t share_begin = 0;  ///< the first of them, as a position within the global batch
  std::uint32_t positions = 0;    ///< positions of the global batch
};

/// The batches of one run. Without a share the run's order is the epoch's order and batch k is
/// positions [k*B, min((k+1)*B, L)), found by arithmetic as it always was. With a share the run's
/// order holds only the shared positions, and a table of the batches whose share is not empty,
/// in order, maps them back.
class BatchLayout {
 public:
  /// The whole of every batch of an order of `positions`.
  BatchLayout(std::uint64_t batch_size, std::uint64_t positions)
      : batch_size_(batch_size), global_positions_(positions), positions_(positions) {}
  /// A share: `slices` in increasing index, each `first` the previous one's first + count.
  BatchLayout(std::uint64_t batch_size, std::uint64_t global_positions, std::vector<BatchSlice> slices)
      : batch_size_(batch_size), global_positions_(global_positions),
        positions_(slices.empty() ? 0 : slices.back().first + slices.back().count), shared_(true),
        slices_(std::move(slices)) {}

  /// The slice that holds the run's position `position` (< the run's positions).
  BatchSlice slice_of(std::uint64_t position) const {
    if (!shared_) {
      const std::uint64_t k = position / batch_size_;
      const std::uint64_t first = k * batch_size_;
      const auto count = static_cast<std::size_t>(std::min(batch_size_, positions_ - first));
      return {k, first, count, 0, static_cast<std::uint32_t>(count)};
    }
    const auto it = std::upper_bound(slices_.begin(), slices_.end(), position,
                                     [](std::uint64_t p, const BatchSlice& s) { return p < s.first; });
    return *std::prev(it);
  }

  /// The run's first position of global batch `first_batch` or, when that batch has nothing for
  /// the run, of the next one that has; the run's positions when none has (a run resumed there
  /// has nothing to load).
  std::uint64_t first_position(std::uint64_t first_batch) const {
    if (!shared_)
      return first_batch >= (positions_ + batch_size_ - 1) / batch_size_ ? positions_ : first_batch * batch_size_;
    const auto it = std::lower_bound(slices_.begin(), slices_.end(), first_batch,
                                     [](const BatchSlice& s, std::uint64_t k) { return s.index < k; });
    return it == slices_.end() ? positions_ : it->first;
  }

  /// L: the positions of the epoch's order, all shares together.
  std::uint64_t global_positions() const { return global_positions_; }

 private:
  std::uint64_t batch_size_;
  std::uint64_t global_positions_;
  std::uint64_t positions_;  ///< the run's positions (its order's length)
  bool shared_ = false;
  std::vector<BatchSlice> slices_;
};

/// The buffer of one batch: rows [0, capacity) correspond to the run's positions
/// [first, first + capacity); rows whose sample was unusable are squeezed out at the end.
struct BatchStorage {
  SampleShape shape;
  std::size_t views = 1;       ///< rows per position (test-time views)
  std::vector<float> data;
  std::vector<int> labels;
  std::vector<std::uint64_t> ids;
  std::vector<std::uint32_t> positions;  ///< each row's position within the global batch
  std::vector<char> filled;
  std::uint64_t epoch = 0;
  std::uint64_t index = 0;
  std::uint64_t first = 0;     ///< first run position of the batch
  std::size_t capacity = 0;    ///< positions the batch covers (= tokens it holds)
  std::size_t count = 0;       ///< usable samples, rows [0, count) after compaction
  std::uint32_t share_begin = 0;      ///< row 0's position within the global batch
  std::uint32_t batch_positions = 0;  ///< positions of the global batch

  void reset(const SampleShape& s, std::size_t rows_per_position, std::uint64_t e, const BatchSlice& slice) {
    shape = s;
    views = rows_per_position;
    epoch = e;
    index = slice.index;
    first = slice.first;
    capacity = slice.count;
    share_begin = slice.share_begin;
    batch_positions = slice.positions;
    count = 0;
    data.resize(capacity * views * s.floats());
    labels.assign(capacity, -1);
    ids.assign(capacity, 0);
    positions.resize(capacity);
    filled.assign(capacity, 0);
  }

  /// Moves the filled rows to the front, keeping their order.
  void compact() {
    const std::size_t floats = shape.floats() * views;
    std::size_t out = 0;
    for (std::size_t row = 0; row < capacity; ++row) {
      if (!filled[row]) continue;
      if (out != row) {
        std::memmove(data.data() + out * floats, data.data() + row * floats, floats * sizeof(float));
        labels[out] = labels[row];
        ids[out] = ids[row];
      }
      positions[out] = static_cast<std::uint32_t>(share_begin + row);
      ++out;
    }
    count = out;
  }
};

/// Decoded, not yet augmented images, kept while they fit in the budget. Sample i is only ever
/// touched by the one task that processes it in the current epoch, and epochs do not overlap,
/// so a slot needs no lock; the atomic state publishes a filled slot to later epochs.
class DecodedCache {
 public:
  DecodedCache(std::size_t samples, std::size_t budget_bytes)
      : slots_(samples), ready_(new std::atomic<bool>[samples]), budget_(budget_bytes) {
    for (std::size_t i = 0; i < samples; ++i) ready_[i].store(false, std::memory_order_relaxed);
  }
  cv::Mat get(std::size_t i) const {
    return ready_[i].load(std::memory_order_acquire) ? slots_[i] : cv::Mat();
  }
  void offer(std::size_t i, const cv::Mat& image) {
    const std::size_t bytes = image.total() * image.elemSize();
    if (used_.fetch_add(bytes) + bytes > budget_) {
      used_.fetch_sub(bytes);  // over budget: this one streams from disk every epoch
      return;
    }
    slots_[i] = image;
    ready_[i].store(true, std::memory_order_release);
  }
  std::size_t bytes() const { return used_.load(); }

 private:
  std::vector<cv::Mat> slots_;
  std::unique_ptr<std::atomic<bool>[]> ready_;
  std::size_t budget_;
  std::atomic<std::size_t> used_{0};
};

// ---------------------------------------------------------------------------------------------
// One epoch's flow graph

namespace {

struct Work {
  std::uint64_t position = 0;  ///< place in the epoch's order (the sequence number)
  std::uint64_t sample = 0;    ///< data-set index
};

struct Decoded {
  std::uint64_t position = 0;
  std::uint64_t sample = 0;
  bool ok = false;
  augment::DecodedSample image;
};

struct Done {
  std::uint64_t position = 0;
  bool ok = false;
};

/// A flow-graph message. oneTBB keeps messages inside its tasks, and its small-object pool
/// recycles a task's memory from the thread that freed it to the one that allocates the next,
/// inside libtbb.so. TSan sees every hand-over of a task (tsan/tbb_itt_bridge.cpp) but not that
/// one, and would take a message written into recycled memory for a race with the message that
/// was there before. So a message claims its memory before it writes its value, and hands it
/// on once its value is destroyed (the value lives in a union so that the destructor can end it
/// first). See common/tsan.hpp. Outside TSan builds it is a T with T's own copies and moves.
template <typename T>
class Message {
 public:
  Message() : value_((claim(), T{})) {}
  Message(T value) : value_((claim(), std::move(value))) {}  // NOLINT: implicit, bodies return T
  Message(const Message& other) : value_((claim(), other.value_)) {}
  Message(Message&& other) noexcept(std::is_nothrow_move_constructible_v<T>)
      : value_((claim(), std::move(other.value_))) {}
  Message& operator=(const Message& other) {
    value_ = other.value_;
    return *this;
  }
  Message& operator=(Message&& other) noexcept(std::is_nothrow_move_assignable_v<T>) {
    value_ = std::move(other.value_);
    return *this;
  }
  ~Message() {
    value_.~T();
    for_each_line([](const void* line) { tbb_handoff_release(line); });  // to whatever oneTBB builds here next
  }

  const T& get() const { return value_; }

 private:
  /// Takes this memory over from its last occupants (the releases in their destructors). Keyed
  /// by cache line, not by address: oneTBB may recycle a task's memory into another node's
  /// buffer, where a message starts at another offset than the one that was there before.
  void claim() const {
    for_each_line([](const void* line) { tbb_handoff_acquire(line); });
  }
  /// f(address) for each 64-byte line this object covers: the sync keys (never dereferenced;
  /// without TSan the calls are empty and the loop compiles to nothing).
  template <typename F>
  void for_each_line(F&& f) const {
    constexpr std::uintptr_t kLine = 64;
    const auto first = reinterpret_cast<std::uintptr_t>(this);
    for (std::uintptr_t line = first & ~(kLine - 1); line < first + sizeof(*this); line += kLine)
      f(reinterpret_cast<const void*>(line));
  }
  union {
    T value_;
  };
};

}  // namespace

class EpochRun {
 public:
  struct Context {
    const Dataset* data;
    const augment::Pipeline* pipeline;
    const LoaderOptions* options;
    SampleShape shape;
    BadFiles* bad;
    DecodedCache* cache;
    tbb::task_arena* arena;
  };

  /// `order`: the positions this run loads (the epoch's order, or with a share only the shared
  /// positions), laid out in global batches by `layout`; streaming starts at `first_position`.
  EpochRun(Context context, std::uint64_t epoch, std::vector<std::uint64_t> order, BatchLayout layout,
           std::vector<bool> excluded, std::uint64_t first_position = 0)
      : ctx_(context), epoch_(epoch), order_(std::move(order)), layout_(std::move(layout)),
        excluded_(std::move(excluded)), first_position_(first_position), next_position_(first_position) {}

  ~EpochRun() { shutdown(); }

  /// Stops the run and destroys its graph, so that nothing refers to the loader's arena, data
  /// or options any more: a Batch may outlive the Loader and release into a shut-down run.
  void shutdown() {
    stop();
    if (!graph_) return;
    execute_in_arena(*ctx_.arena, [this] {
      graph_->wait_for_all();
      batcher_.reset();
      sequencer_.reset();
      augment_.reset();
      decode_.reset();
      limiter_.reset();
      source_.reset();
      graph_.reset();
    });
  }

  /// Builds the graph in the loader's arena (so its tasks run there) and starts it.
  void start() {
    if (next_position_ >= order_.size()) {  // an empty epoch, or resumed after its last batch
      processed_.store(true);
      finish();
      return;
    }
    if (ctx_.options->inline_loading) return;  // next() does the work (produce_inline)
    const int threads = ctx_.options->threads;
    const std::size_t tokens = static_cast<std::size_t>(ctx_.options->prefetch_batches) * ctx_.options->batch_size;
    execute_in_arena(*ctx_.arena, [&] {
      graph_ = std::make_unique<flow::graph>();
      source_ = std::make_unique<flow::input_node<Message<Work>>>(*graph_, [this](tbb::flow_control& control) {
        if (stopping_.load() || next_position_ >= order_.size()) {
          control.stop();
          return Message<Work>();
        }
        const std::uint64_t position = next_position_++;
        return Message<Work>(Work{position, order_[position]});
      });
      limiter_ = std::make_unique<flow::limiter_node<Message<Work>, long>>(*graph_, tokens);
      decode_ = std::make_unique<flow::function_node<Message<Work>, Message<Decoded>>>(
          *graph_, threads, [this](const Message<Work>& work) { return Message<Decoded>(decode(work.get())); });
      augment_ = std::make_unique<flow::function_node<Message<Decoded>, Message<Done>>>(
          *graph_, threads, [this](const Message<Decoded>& decoded) { return Message<Done>(augment(decoded.get())); });
      sequencer_ = std::make_unique<flow::sequencer_node<Message<Done>>>(
          *graph_, [this](const Message<Done>& done) {
            return static_cast<std::size_t>(done.get().position - first_position_);  // numbered from 0
          });
      batcher_ = std::make_unique<flow::function_node<Message<Done>, flow::continue_msg>>(
          *graph_, flow::serial, [this](const Message<Done>& done) {
            assemble(done.get());
            return flow::continue_msg();
          });
      flow::make_edge(*source_, *limiter_);
      flow::make_edge(*limiter_, *decode_);
      flow::make_edge(*decode_, *augment_);
      flow::make_edge(*augment_, *sequencer_);
      flow::make_edge(*sequencer_, *batcher_);
      // wait_for_all must not return while the graph only waits for the consumer to give
      // tokens back: the reservation is released when the last batch is out, or on stop/error.
      graph_->reserve_wait();
      reserved_ = true;
      source_->activate();
    });
    runner_ = std::thread([this] {
      execute_in_arena(*ctx_.arena, [this] {
        {
          std::lock_guard lock(queue_mutex_);
          runner_entered_ = true;
        }
        queue_cv_.notify_all();
        graph_->wait_for_all();
      });
      finish();
    });
    // Runners take the arena's slot for external threads in epoch order: the next epoch starts
    // early (prefetch_next_epoch), and a runner of epoch e delayed by the OS past that start
    // found the slot held by epoch e+1's runner, which waits for the consumer's tokens while the
    // consumer, ending epoch e, waited for epoch e's runner: a deadlock, seen about once in 1,000
    // runs of a test streaming short epochs under load. So start() returns once its runner is in.
    std::unique_lock lock(queue_mutex_);
    queue_cv_.wait(lock, [this] { return runner_entered_; });
  }

  std::optional<Batch> next(const std::shared_ptr<EpochRun>& self, double& wait_seconds) {
    if (ctx_.options->inline_loading) produce_inline();
    std::unique_lock lock(queue_mutex_);
    const auto start = std::chrono::steady_clock::now();
    queue_cv_.wait(lock, [this] { return !ready_.empty() || finished_ || error_; });
    wait_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (error_) std::rethrow_exception(error_);
    if (ready_.empty()) return std::nullopt;
    auto storage = std::move(ready_.front());
    ready_.pop_front();
    lock.unlock();
    // The batch leaves the graph: its tokens go back now, not when the consumer drops it, so a
    // consumer that keeps batches (even all of them) can never starve the graph.
    give_back(static_cast<long>(storage->capacity));
    return Batch(std::move(storage), self);
  }

  /// Called when the consumer drops a batch: its buffer is reused for a later one.
  void release(std::unique_ptr<BatchStorage> storage) {
    std::lock_guard lock(storage_mutex_);
    pool_.push_back(std::move(storage));
  }

  void stop() {
    stopping_.store(true);
    if (graph_) graph_->cancel();
    release_reservation();
    if (runner_.joinable()) runner_.join();
    finish();
  }

  std::size_t high_water() const { return high_water_.load(); }
  std::uint64_t epoch() const { return epoch_; }
  /// The positions of the epoch's order, all shares together (epoch_positions).
  std::uint64_t global_positions() const { return layout_.global_positions(); }
  /// The samples this epoch's order left out.
  const std::vector<bool>& excluded() const { return excluded_; }
  /// Every sample of the epoch has been decoded and augmented (so every bad file is known);
  /// batches may still be queued for the consumer.
  bool processed() const { return processed_.load(); }

 private:
  /// Inline loading: the graph's stages for the next positions, in order, on the calling
  /// thread (so no sequencer is needed), until a batch is ready or the epoch is processed.
  void produce_inline() {
    constexpr std::uint64_t kPrefetchAhead = 8;  // samples: a few ahead cover a miss to memory
    for (;;) {
      {
        std::lock_guard lock(queue_mutex_);
        if (!ready_.empty() || error_ || finished_) return;
      }
      if (stopping_.load() || next_position_ >= order_.size()) {
        finish();
        return;
      }
      const std::uint64_t position = next_position_++;
      if (position + kPrefetchAhead < order_.size()) ctx_.data->prefetch(order_[position + kPrefetchAhead]);
      assemble(augment(decode(Work{position, order_[position]})));
    }
  }

  void give_back(long positions) {
    in_flight_.fetch_sub(positions);
    if (limiter_) limiter_->decrementer().try_put(positions);
  }

  Decoded decode(const Work& work) {
    note_in_flight();
    Decoded out{work.position, work.sample, false, {}};
    if (stopping_.load()) return out;
    const Dataset& data = *ctx_.data;
    const augflow::SampleKey key{ctx_.options->seed, epoch_, work.sample};
    try {
      if (data.in_memory()) {
        out.image = ctx_.pipeline->prepare(data.image(work.sample), key);
      } else if (ctx_.cache || ctx_.options->shared_cache) {
        // Cached sets always take the reference path (whole image, then transforms), so a
        // sample's bytes do not depend on whether it was cached.
        ImageCache* shared = ctx_.options->shared_cache.get();
        const auto& path = data.paths[work.sample];
        cv::Mat image = shared ? shared->get(path, data.channels) : ctx_.cache->get(work.sample);
        if (image.empty()) {
          image = augment::decode_file(path, {data.channels, {}, 1, ctx_.options->max_pixels}).image;
          if (shared)
            shared->offer(path, data.channels, image);
          else
            ctx_.cache->offer(work.sample, image);
        }
        out.image = ctx_.pipeline->prepare(image, key);
      } else {
        const auto bytes = augment::read_file(data.paths[work.sample]);
        out.image = ctx_.pipeline->decode(bytes, key, data.channels, ctx_.options->max_pixels);
      }
      out.ok = true;
    } catch (const DataError& e) {
      unusable(work.sample, e.reason());
    } catch (const IoError& e) {
      unusable(work.sample, e.what());
    } catch (...) {
      fail(std::current_exception());
    }
    return out;
  }

  void unusable(std::uint64_t sample, const std::string& reason) {
    if (ctx_.options->strict) {
      fail(std::make_exception_ptr(DataError(ctx_.data->describe(sample), reason + " (--strict)")));
      return;
    }
    ctx_.bad->add(sample, ctx_.data->describe(sample), reason);
  }

  Done augment(const Decoded& decoded) {
    if (!decoded.ok || stopping_.load()) return {decoded.position, false};
    try {
      if (ctx_.options->views) return views_of(decoded);
      const cv::Mat image = ctx_.pipeline->augment(decoded.image);
      const SampleShape got{image.channels(), image.rows, image.cols};
      if (!(got == ctx_.shape))
        throw ShapeError(ctx_.data->describe(decoded.sample) + ": the augmentation gives a " +
                         std::to_string(got.width) + "x" + std::to_string(got.height) + "x" +
                         std::to_string(got.channels) + " image but the batch holds " +
                         std::to_string(ctx_.shape.width) + "x" + std::to_string(ctx_.shape.height) + "x" +
                         std::to_string(ctx_.shape.channels) +
                         "; end the spec with a fixed-size crop (scale_crop, resized_crop, pad_crop)");
      BatchStorage& storage = storage_for(decoded.position);
      const std::size_t row = decoded.position - storage.first;
      ctx_.pipeline->normalize().to_chw(image, storage.data.data() + row * ctx_.shape.floats());
      storage.labels[row] = ctx_.data->labels[decoded.sample];
      storage.ids[row] = decoded.sample;
      storage.filled[row] = 1;
      return {decoded.position, true};
    } catch (...) {
      fail(std::current_exception());
      return {decoded.position, false};
    }
  }

  /// The test-time views of one decoded sample, written as consecutive rows of its batch.
  Done views_of(const Decoded& decoded) {
    cv::Mat image = ctx_.pipeline->augment(decoded.image);  // a normalize-only pipeline: as decoded
    if (ctx_.options->view_pad > 0) {
      const int pad = ctx_.options->view_pad;
      cv::Mat padded;
      cv::copyMakeBorder(image, padded, pad, pad, pad, pad, cv::BORDER_CONSTANT, cv::Scalar::all(0));
      image = padded;
    }
    const augment::ViewPipeline& views = *ctx_.options->views;
    const std::vector<cv::Mat> crops = views.views.apply(image);
    BatchStorage& storage = storage_for(decoded.position);
    const std::size_t row = (decoded.position - storage.first) * crops.size();
    for (std::size_t v = 0; v < crops.size(); ++v) {
      const SampleShape got{crops[v].channels(), crops[v].rows, crops[v].cols};
      if (!(got == ctx_.shape))
        throw ShapeError(ctx_.data->describe(decoded.sample) + ": view " + std::to_string(v) + " is " +
                         std::to_string(got.width) + "x" + std::to_string(got.height) + "x" +
                         std::to_string(got.channels) + " but the batch holds " + std::to_string(ctx_.shape.width) +
                         "x" + std::to_string(ctx_.shape.height) + "x" + std::to_string(ctx_.shape.channels));
      views.normalize.to_chw(crops[v], storage.data.data() + (row + v) * ctx_.shape.floats());
    }
    storage.labels[decoded.position - storage.first] = ctx_.data->labels[decoded.sample];
    storage.ids[decoded.position - storage.first] = decoded.sample;
    storage.filled[decoded.position - storage.first] = 1;
    return {decoded.position, true};
  }

  /// Runs serially, in the run's order (after the sequencer).
  void assemble(const Done& done) {
    const BatchSlice slice = layout_.slice_of(done.position);
    const std::uint64_t k = slice.index;
    if (done.position + 1 == slice.first + slice.count) {
      std::unique_ptr<BatchStorage> storage;
      {
        std::lock_guard lock(storage_mutex_);
        auto it = building_.find(k);
        if (it != building_.end()) {
          storage = std::move(it->second);
          building_.erase(it);
        }
      }
      if (storage) storage->compact();
      if (!storage || storage->count == 0 || stopping_.load()) {
        // Nothing usable (or stopping): give the tokens back at once.
        if (storage) {
          std::lock_guard lock(storage_mutex_);
          pool_.push_back(std::move(storage));
        }
        give_back(static_cast<long>(slice.count));
      } else {
        std::lock_guard lock(queue_mutex_);
        ready_.push_back(std::move(storage));
        queue_cv_.notify_all();
      }
    }
    if (done.position + 1 == order_.size()) {
      processed_.store(true);
      finish();
      release_reservation();
    }
  }

  BatchStorage& storage_for(std::uint64_t position) {
    const BatchSlice slice = layout_.slice_of(position);
    std::lock_guard lock(storage_mutex_);
    auto& slot = building_[slice.index];
    if (!slot) {
      if (!pool_.empty()) {
        slot = std::move(pool_.back());
        pool_.pop_back();
      } else {
        slot = std::make_unique<BatchStorage>();
      }
      slot->reset(ctx_.shape, ctx_.options->views ? ctx_.options->views->views.count() : 1, epoch_, slice);
    }
    return *slot;
  }

  void note_in_flight() {
    const auto now = static_cast<std::size_t>(std::max(0l, in_flight_.fetch_add(1) + 1));
    std::size_t seen = high_water_.load();
    while (now > seen && !high_water_.compare_exchange_weak(seen, now)) {
    }
  }

  void fail(std::exception_ptr error) {
    {
      std::lock_guard lock(queue_mutex_);
      if (!error_) error_ = error;
      queue_cv_.notify_all();
    }
    stopping_.store(true);
    if (graph_) graph_->cancel();
    release_reservation();
  }

  void finish() {
    std::lock_guard lock(queue_mutex_);
    finished_ = true;
    queue_cv_.notify_all();
  }

  void release_reservation() {
    if (reserved_ && !released_.exchange(true)) graph_->release_wait();
  }

  Context ctx_;
  std::uint64_t epoch_;
  std::vector<std::uint64_t> order_;
  BatchLayout layout_;
  std::vector<bool> excluded_;
  std::uint64_t first_position_ = 0;  // where the run starts: 0, or a batch's first for a resumed run
  std::uint64_t next_position_ = 0;   // only the source body (or produce_inline) touches it

  std::unique_ptr<flow::graph> graph_;
  std::unique_ptr<flow::input_node<Message<Work>>> source_;
  std::unique_ptr<flow::limiter_node<Message<Work>, long>> limiter_;
  std::unique_ptr<flow::function_node<Message<Work>, Message<Decoded>>> decode_;
  std::unique_ptr<flow::function_node<Message<Decoded>, Message<Done>>> augment_;
  std::unique_ptr<flow::sequencer_node<Message<Done>>> sequencer_;
  std::unique_ptr<flow::function_node<Message<Done>, flow::continue_msg>> batcher_;
  std::thread runner_;
  bool runner_entered_ = false;  // under queue_mutex_: the runner is inside the arena
  bool reserved_ = false;
  std::atomic<bool> released_{false};
  std::atomic<bool> stopping_{false};
  std::atomic<bool> processed_{false};

  std::mutex storage_mutex_;
  std::map<std::uint64_t, std::unique_ptr<BatchStorage>> building_;
  std::vector<std::unique_ptr<BatchStorage>> pool_;

  std::mutex queue_mutex_;
  std::condition_variable queue_cv_;
  std::deque<std::unique_ptr<BatchStorage>> ready_;
  bool finished_ = false;
  std::exception_ptr error_;

  std::atomic<long> in_flight_{0};
  std::atomic<std::size_t> high_water_{0};
};

// ---------------------------------------------------------------------------------------------
// Batch

Batch::Batch(std::unique_ptr<BatchStorage> storage, std::shared_ptr<EpochRun> run)
    : storage_(std::move(storage)), run_(std::move(run)) {}
Batch::Batch(Batch&&) noexcept = default;
Batch& Batch::operator=(Batch&& other) noexcept {
  if (this != &other) {
    release();
    storage_ = std::move(other.storage_);
    run_ = std::move(other.run_);
  }
  return *this;
}
Batch::~Batch() { release(); }

void Batch::release() {
  if (storage_ && run_) run_->release(std::move(storage_));
  storage_.reset();
  run_.reset();
}

int Batch::size() const { return static_cast<int>(storage_->count); }
int Batch::views() const { return static_cast<int>(storage_->views); }
const SampleShape& Batch::shape() const { return storage_->shape; }
const float* Batch::data() const { return storage_->data.data(); }
std::span<const int> Batch::labels() const { return {storage_->labels.data(), storage_->count}; }
std::span<const std::uint64_t> Batch::sample_ids() const { return {storage_->ids.data(), storage_->count}; }
std::uint64_t Batch::epoch() const { return storage_->epoch; }
std::uint64_t Batch::index() const { return storage_->index; }
std::span<const std::uint32_t> Batch::positions() const { return {storage_->positions.data(), storage_->count}; }
std::size_t Batch::batch_positions() const { return storage_->batch_positions; }

// ---------------------------------------------------------------------------------------------
// Loader

namespace {

SampleShape output_shape(const Dataset& data, const augment::Pipeline& pipeline, const LoaderOptions& options) {
  if (options.views) return {data.channels, options.views->views.crop_size(), options.views->views.crop_size()};
  if (data.in_memory()) {
    const auto out = pipeline.output_info({data.cols, data.rows, data.channels});
    return {out.channels, out.height, out.width};
  }
  // Image files differ in size: the output must not depend on it.
  const auto a = pipeline.output_info({641, 479, data.channels});
  const auto b = pipeline.output_info({333, 500, data.channels});
  if (!(a == b))
    throw ConfigError("the augmentation spec '" + pipeline.print() +
                      "' gives images whose size depends on the input; end it with a fixed-size crop "
                      "(scale_crop, resized_crop or pad_crop) so that a batch has one shape");
  return {a.channels, a.height, a.width};
}

}  // namespace

Loader::Loader(Dataset data, std::shared_ptr<const augment::Pipeline> pipeline, LoaderOptions options,
               WarningSink warn)
    : data_(std::move(data)), pipeline_(std::move(pipeline)), options_(options) {
  if (options_.batch_size < 1 || options_.batch_size > 65536)
    throw ConfigError("batch size must be in [1, 65536], got " + std::to_string(options_.batch_size));
  if (options_.threads < 1 || options_.threads > 256)
    throw ConfigError("threads must be in [1, 256], got " + std::to_string(options_.threads));
  if (options_.prefetch_batches < 1 || options_.prefetch_batches > 1024)
    throw ConfigError("prefetch must be in [1, 1024] batches, got " + std::to_string(options_.prefetch_batches));
  if (options_.max_pixels < 1) throw ConfigError("max pixels must be positive");
  if (data_.size() == 0)
    throw DataError(data_.name, "the data set is empty: no images to stream");
  shape_ = output_shape(data_, *pipeline_, options_);
  bad_ = std::make_unique<BadFiles>(data_.size(), std::move(warn));
  if (options_.cache_mb > 0 && !options_.shared_cache && !data_.in_memory())
    cache_ = std::make_unique<DecodedCache>(data_.size(), options_.cache_mb << 20);
  // The flow graph provides the parallelism; OpenCV's own thread pool would oversubscribe
  // the cores (PITFALLS.md). setNumThreads is process-wide and not thread-safe (with OpenCV's
  // TBB backend it tears down and rebuilds an arena), and several loaders may be built at once
  // on different threads (parallel search trials): it is set once per process, before the
  // first graph runs.
  static std::once_flag opencv_threads_off;
  std::call_once(opencv_threads_off, [] { cv::setNumThreads(0); });
  arena_ = std::make_unique<tbb::task_arena>(options_.threads);
}

Loader::~Loader() {
  if (next_run_) next_run_->shutdown();
  if (run_) run_->shutdown();
}

std::size_t Loader::tokens() const {
  return static_cast<std::size_t>(options_.prefetch_batches) * options_.batch_size;
}

std::vector<std::uint64_t> Loader::global_order(std::uint64_t epoch, const std::vector<bool>& excluded) const {
  auto order = epoch_order(data_.size(), excluded, options_.seed, epoch, options_.shuffle, options_.shard);
  if (options_.drop_last) order.resize(order.size() / options_.batch_size * options_.batch_size);
  return order;
}

namespace {

/// The shared positions of `order`, batch by batch, and the table that maps them back to the
/// global batches (which leaves out the batches whose share is empty).
std::pair<std::vector<std::uint64_t>, std::vector<BatchSlice>> share_of(const std::vector<std::uint64_t>& order,
                                                                         const LoaderOptions& options) {
  const std::uint64_t batch_size = options.batch_size;
  std::vector<std::uint64_t> local;
  std::vector<BatchSlice> slices;
  for (std::uint64_t k = 0, first = 0; first < order.size(); ++k, first += batch_size) {
    const std::size_t positions = static_cast<std::size_t>(std::min<std::uint64_t>(batch_size, order.size() - first));
    const auto [begin, end] = options.batch_share(positions);
    if (begin > end || end > positions)
      throw ConfigError("the loader's batch share must give 0 <= begin <= end <= P; for a batch of P = " +
                        std::to_string(positions) + " positions it gave [" + std::to_string(begin) + ", " +
                        std::to_string(end) + ")");
    if (begin == end) continue;
    slices.push_back({k, local.size(), end - begin, static_cast<std::uint32_t>(begin),
                      static_cast<std::uint32_t>(positions)});
    local.insert(local.end(), order.begin() + static_cast<std::ptrdiff_t>(first + begin),
                 order.begin() + static_cast<std::ptrdiff_t>(first + end));
  }
  return {std::move(local), std::move(slices)};
}

}  // namespace

std::shared_ptr<EpochRun> Loader::make_run(std::uint64_t epoch, std::uint64_t first_batch) {
  auto excluded = bad_->excluded();
  auto order = global_order(epoch, excluded);
  const std::uint64_t batch_size = options_.batch_size;
  BatchLayout layout(batch_size, order.size());
  if (options_.batch_share) {  // the run loads only its share of each batch
    auto [local, slices] = share_of(order, options_);
    layout = BatchLayout(batch_size, order.size(), std::move(slices));
    order = std::move(local);
  }
  const std::uint64_t first_position = layout.first_position(first_batch);
  EpochRun::Context context{&data_, pipeline_.get(), &options_, shape_, bad_.get(), cache_.get(), arena_.get()};
  return std::make_shared<EpochRun>(context, epoch, std::move(order), std::move(layout), std::move(excluded),
                                    first_position);
}

void Loader::retire(std::shared_ptr<EpochRun>& run) {
  if (!run) return;
  high_water_ = std::max(high_water_, run->high_water());
  run->shutdown();
  run.reset();
}

void Loader::start_epoch(std::uint64_t epoch, std::uint64_t first_batch) {
  retire(run_);
  if (next_run_ && next_run_->epoch() == epoch && first_batch == 0) {
    run_ = std::move(next_run_);  // already streaming since the previous epoch was processed
    return;
  }
  retire(next_run_);
  if (bad_->count() == data_.size())
    throw DataError(data_.name, "no usable image left: all " + std::to_string(data_.size()) +
                                    " samples were skipped (see the messages above)");
  run_ = make_run(epoch, first_batch);
  run_->start();
}

std::optional<Batch> Loader::next() {
  if (!run_) throw Error("Loader::next() called before start_epoch()");
  // Once every sample of this epoch is processed, its bad files are known and the next
  // epoch's order is fixed: start streaming it while the consumer drains this one, so the
  // consumer does not wait for the pipeline to fill at every epoch boundary.
  if (options_.prefetch_next_epoch && !options_.inline_loading && !next_run_ && run_->processed() &&
      run_->epoch() < options_.last_epoch && bad_->count() < data_.size()) {
    next_run_ = make_run(run_->epoch() + 1);
    next_run_->start();
  }
  return run_->next(run_, wait_seconds_);
}

void Loader::stop() {
  if (run_) run_->stop();
  retire(next_run_);
}

std::size_t Loader::in_flight_high_water() const {
  std::size_t most = high_water_;
  if (run_) most = std::max(most, run_->high_water());
  if (next_run_) most = std::max(most, next_run_->high_water());
  return most;
}

std::vector<bool> Loader::exclusions_for(std::uint64_t epoch) const {
  if (next_run_ && next_run_->epoch() == epoch) return next_run_->excluded();
  if (run_ && run_->epoch() == epoch) return run_->excluded();  // an epoch interrupted midway
  return bad_->excluded();
}

std::size_t Loader::epoch_positions(std::uint64_t epoch) const {
  // The same runs, in the same precedence, as exclusions_for().
  if (next_run_ && next_run_->epoch() == epoch) return next_run_->global_positions();
  if (run_ && run_->epoch() == epoch) return run_->global_positions();
  return global_order(epoch, bad_->excluded()).size();
}

std::size_t Loader::cache_bytes() const { return cache_ ? cache_->bytes() : 0; }

}  // namespace augflow::pipeline
