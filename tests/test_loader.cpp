// The streaming loader (pipeline/loader.hpp) and its epoch sampler (pipeline/sampler.hpp):
// every sample once per epoch, batches bit-identical whatever the thread count and prefetch,
// the token bound on samples in flight, unusable files (counted once, excluded later, strict
// mode), max_pixels, early stop, the loader's lifetime against held batches, the decoded-image
// cache and prefetch overlapping a slow consumer.
//
// Every input is generated in a TempDir. Every streaming loop runs under a watchdog: a loader
// that hangs is the bug, so after 60 s the test fails and the process aborts.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <zlib.h>

#include "augment/decode.hpp"
#include "augment/normalize.hpp"
#include "augment/pipeline.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "pipeline/dataset.hpp"
#include "pipeline/loader.hpp"
#include "pipeline/report.hpp"
#include "pipeline/sampler.hpp"
#include "tests/fixtures.hpp"
#include "tests/loader_fixtures.hpp"

namespace augflow::pipeline {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;
using test::TempDir;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using namespace loader_test;

// ---------------------------------------------------------------------------------------------
// Watchdog

constexpr auto kWatchdog = 60s;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// ---------------------------------------------------------------------------------------------
// Batches copied out of the loader (a Batch holds tokens: keeping them would stall the loader)

struct BatchRecord {
  std::uint64_t epoch = 0;
  std::uint64_t index = 0;
  SampleShape shape;
  std::vector<float> data;
  std::vector<int> labels;
  std::vector<std::uint64_t> ids;
};

BatchRecord record(const Batch& batch) {
  BatchRecord r;
  r.epoch = batch.epoch();
  r.index = batch.index();
  r.shape = batch.shape();
  r.data.assign(batch.data(), batch.data() + static_cast<std::size_t>(batch.size()) * batch.shape().floats());
  r.labels.assign(batch.labels().begin(), batch.labels().end());
  r.ids.assign(batch.sample_ids().begin(), batch.sample_ids().end());
  EXPECT_EQ(r.labels.size(), static_cast<std::size_t>(batch.size()));
  EXPECT_EQ(r.ids.size(), static_cast<std::size_t>(batch.size()));
  return r;
}

struct EpochRecord {
  std::vector<BatchRecord> batches;

  std::vector<std::uint64_t> ids() const {
    std::vector<std::uint64_t> out;
    for (const auto& b : batches) out.insert(out.end(), b.ids.begin(), b.ids.end());
    return out;
  }
  std::vector<std::size_t> sizes() const {
    std::vector<std::size_t> out;
    for (const auto& b : batches) out.push_back(b.ids.size());
    return out;
  }
  /// Each sample's floats, by data-set index.
  std::map<std::uint64_t, std::vector<float>> rows() const {
    std::map<std::uint64_t, std::vector<float>> out;
    for (const auto& b : batches) {
      const std::size_t floats = b.shape.floats();
      for (std::size_t r = 0; r < b.ids.size(); ++r)
        out[b.ids[r]].assign(b.data.begin() + static_cast<std::ptrdiff_t>(r * floats),
                             b.data.begin() + static_cast<std::ptrdiff_t>((r + 1) * floats));
    }
    return out;
  }
};

/// Streams `epoch` (start_epoch + next() until the end, or `max_batches`), holding each batch for
/// `pause` as a training step would. Under the watchdog.
EpochRecord stream(Loader& loader, std::uint64_t epoch, std::chrono::milliseconds pause = 0ms,
                   std::size_t max_batches = SIZE_MAX, const std::string& label = "") {
  return within_time(label + "streaming epoch " + std::to_string(epoch), [&] {
    EpochRecord out;
    loader.start_epoch(epoch);
    while (out.batches.size() < max_batches) {
      std::optional<Batch> batch = loader.next();
      if (!batch) break;
      out.batches.push_back(record(*batch));
      if (pause > 0ms) std::this_thread::sleep_for(pause);
    }
    return out;
  });
}

/// Byte equality of two epochs, with the first difference on failure.
::testing::AssertionResult same_batches(const EpochRecord& a, const EpochRecord& b) {
  if (a.batches.size() != b.batches.size())
    return ::testing::AssertionFailure() << a.batches.size() << " vs " << b.batches.size() << " batches";
  for (std::size_t k = 0; k < a.batches.size(); ++k) {
    const BatchRecord& x = a.batches[k];
    const BatchRecord& y = b.batches[k];
    if (x.ids != y.ids) return ::testing::AssertionFailure() << "batch " << k << ": sample ids differ";
    if (x.labels != y.labels) return ::testing::AssertionFailure() << "batch " << k << ": labels differ";
    if (x.index != y.index || x.epoch != y.epoch)
      return ::testing::AssertionFailure() << "batch " << k << ": epoch/index differ";
    if (!(x.shape == y.shape)) return ::testing::AssertionFailure() << "batch " << k << ": shapes differ";
    if (x.data.size() != y.data.size()) return ::testing::AssertionFailure() << "batch " << k << ": sizes differ";
    for (std::size_t i = 0; i < x.data.size(); ++i)
      if (std::memcmp(&x.data[i], &y.data[i], sizeof(float)) != 0)
        return ::testing::AssertionFailure() << "batch " << k << ": float " << i << " (sample "
                                             << x.ids[i / x.shape.floats()] << ") differs: " << x.data[i]
                                             << " vs " << y.data[i];
  }
  return ::testing::AssertionSuccess();
}

/// How many samples present in both epochs have different floats.
std::size_t differing_rows(const EpochRecord& a, const EpochRecord& b) {
  const auto ra = a.rows();
  const auto rb = b.rows();
  std::size_t n = 0;
  for (const auto& [id, row] : ra) {
    const auto it = rb.find(id);
    if (it != rb.end() && it->second != row) ++n;
  }
  return n;
}

std::vector<std::uint64_t> sorted(std::vector<std::uint64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<std::uint64_t> iota_ids(std::size_t n) {
  std::vector<std::uint64_t> v(n);
  std::iota(v.begin(), v.end(), 0);
  return v;
}

/// Every batch's labels are the data set's labels of its ids; epoch and index are consistent.
void expect_consistent(const EpochRecord& rec, const Dataset& data, std::uint64_t epoch) {
  std::uint64_t last_index = 0;
  for (std::size_t k = 0; k < rec.batches.size(); ++k) {
    const BatchRecord& b = rec.batches[k];
    EXPECT_EQ(b.epoch, epoch);
    if (k > 0) {
      EXPECT_GT(b.index, last_index) << "batch indices must increase";
    }
    last_index = b.index;
    for (std::size_t r = 0; r < b.ids.size(); ++r) {
      ASSERT_LT(b.ids[r], data.size());
      EXPECT_EQ(b.labels[r], data.labels[b.ids[r]]) << "sample " << b.ids[r];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// Collects the loader's warnings (called from decode threads, hence the lock).
struct Warnings {
  std::mutex mutex;
  std::vector<std::string> lines;
  WarningSink sink() {
    return [this](const std::string& line) {
      std::lock_guard lock(mutex);
      lines.push_back(line);
    };
  }
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mutex);
    return lines;
  }
};

/// What Normalize "none" makes of an 8-bit image: the expected row of an identity pipeline.
std::vector<float> chw(const cv::Mat& image) {
  std::vector<float> out(image.total() * image.channels());
  augment::Normalize().to_chw(image, out.data());
  return out;
}

/// An IHDR-only PNG (no pixel data) with a valid checksum (as in test_decode.cpp).
Bytes png_header(std::uint32_t width, std::uint32_t height) {
  Bytes b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (std::uint32_t v : {width, height})
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
  b.insert(b.end(), {8, 2, 0, 0, 0});
  const auto crc = static_cast<std::uint32_t>(crc32(0L, b.data() + 12, 17));
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(crc >> s));
  return b;
}

Bytes gif_bytes() {
  std::string gif = "GIF89a";
  gif += std::string("\x0a\x00\x0a\x00\x80\x00\x00", 7);
  return Bytes(gif.begin(), gif.end());
}

Bytes text_bytes(const std::string& text) { return Bytes(text.begin(), text.end()); }

std::size_t index_of(const Dataset& d, const fs::path& path) {
  const auto it = std::find(d.paths.begin(), d.paths.end(), path);
  EXPECT_NE(it, d.paths.end()) << path << " is not in the data set";
  return static_cast<std::size_t>(it - d.paths.begin());
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---------------------------------------------------------------------------------------------
// Sampler

TEST(Sampler, EpochOrderIsAPermutationOfTheNonExcludedIndices) {
  std::vector<bool> excluded(100, false);
  excluded[0] = excluded[3] = excluded[50] = excluded[99] = true;
  std::vector<std::uint64_t> expected;
  for (std::uint64_t i = 0; i < 100; ++i)
    if (!excluded[i]) expected.push_back(i);
  for (std::uint64_t epoch = 0; epoch < 5; ++epoch) {
    const auto order = epoch_order(100, excluded, 42, epoch, true);
    EXPECT_EQ(sorted(order), expected) << "epoch " << epoch;
    EXPECT_NE(order, expected) << "epoch " << epoch << " is not shuffled";
  }
  // A shorter `excluded` leaves the indices past its end in; nothing at all is fine.
  EXPECT_EQ(sorted(epoch_order(5, {true, false, true}, 1, 0, true)), (std::vector<std::uint64_t>{1, 3, 4}));
  EXPECT_TRUE(epoch_order(0, {}, 1, 0, true).empty());
  EXPECT_TRUE(epoch_order(3, {true, true, true}, 1, 0, true).empty());
  EXPECT_EQ(epoch_order(1, {}, 1, 0, true), std::vector<std::uint64_t>{0});
}

TEST(Sampler, SameSeedAndEpochSameOrderOtherwiseDifferent) {
  const auto a = epoch_order(1000, {}, 42, 3, true);
  // Depends only on the arguments, not on what was computed before.
  (void)epoch_order(1000, {}, 42, 2, true);
  EXPECT_EQ(epoch_order(1000, {}, 42, 3, true), a);
  EXPECT_NE(epoch_order(1000, {}, 42, 4, true), a);
  EXPECT_NE(epoch_order(1000, {}, 43, 3, true), a);
  // Consecutive epochs are not rotations or reversals of each other.
  const auto b = epoch_order(1000, {}, 42, 4, true);
  std::size_t same_place = 0;
  for (std::size_t i = 0; i < a.size(); ++i) same_place += a[i] == b[i];
  EXPECT_LT(same_place, 20u);
}

TEST(Sampler, WithoutShuffleAscending) {
  std::vector<bool> excluded(20, false);
  excluded[4] = excluded[5] = true;
  std::vector<std::uint64_t> expected;
  for (std::uint64_t i = 0; i < 20; ++i)
    if (!excluded[i]) expected.push_back(i);
  for (std::uint64_t seed : {0ull, 9ull})
    for (std::uint64_t epoch : {0ull, 1ull, 7ull}) EXPECT_EQ(epoch_order(20, excluded, seed, epoch, false), expected);
  // Sharded without shuffling: contiguous ascending slices.
  EXPECT_EQ(epoch_order(10, {}, 0, 0, false, {1, 2}), (std::vector<std::uint64_t>{5, 6, 7, 8, 9}));
}

TEST(Sampler, ShardsAreDisjointCoverEverythingAndBalanced) {
  for (std::size_t n : {0u, 1u, 5u, 97u, 100u, 101u}) {
    std::vector<bool> excluded(n, false);
    if (n == 100) excluded[7] = excluded[8] = excluded[60] = true;
    const std::size_t excluded_count = static_cast<std::size_t>(std::count(excluded.begin(), excluded.end(), true));
    const auto full = epoch_order(n, excluded, 5, 2, true);
    for (int count : {1, 2, 3, 4, 7, 8}) {
      SCOPED_TRACE("n=" + std::to_string(n) + " shards=" + std::to_string(count));
      std::vector<std::uint64_t> concatenated;
      std::set<std::uint64_t> seen;
      std::size_t smallest = SIZE_MAX, largest = 0;
      for (int rank = 0; rank < count; ++rank) {
        const auto part = epoch_order(n, excluded, 5, 2, true, {rank, count});
        smallest = std::min(smallest, part.size());
        largest = std::max(largest, part.size());
        for (auto id : part) EXPECT_TRUE(seen.insert(id).second) << "sample " << id << " in two shards";
        concatenated.insert(concatenated.end(), part.begin(), part.end());
      }
      EXPECT_EQ(concatenated, full) << "shards are the epoch's permutation cut in rank order";
      EXPECT_EQ(seen.size(), full.size());
      if (excluded_count == 0) {
        EXPECT_LE(largest - smallest, 1u);
      } else {
        EXPECT_LE(largest - smallest, 1u + excluded_count);
      }
    }
  }
}

TEST(Sampler, BadShardIsAConfigError) {
  for (const Shard bad : {Shard{0, 0}, Shard{-1, 2}, Shard{2, 2}, Shard{5, 3}, Shard{0, -1}}) {
    SCOPED_TRACE("rank " + std::to_string(bad.rank) + " of " + std::to_string(bad.count));
    EXPECT_THROW(epoch_order(10, {}, 0, 0, true, bad), ConfigError);
    EXPECT_THROW(epoch_order(10, {}, 0, 0, false, bad), ConfigError);
  }
  try {
    epoch_order(10, {}, 0, 0, true, {3, 2});
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_TRUE(contains(e.what(), "rank")) << e.what();
  }
  EXPECT_NO_THROW(epoch_order(10, {}, 0, 0, true, {1, 2}));
}

// ---------------------------------------------------------------------------------------------
// Loader: configuration

TEST(Loader, BadOptionsAreConfigErrors) {
  const Dataset data = memory_set(10);
  const auto pipeline = std::make_shared<const augment::Pipeline>();
  auto with = [&](auto change) {
    LoaderOptions o = options(4);
    change(o);
    return o;
  };
  EXPECT_THROW(Loader(data, pipeline, with([](LoaderOptions& o) { o.batch_size = 0; })), ConfigError);
  EXPECT_THROW(Loader(data, pipeline, with([](LoaderOptions& o) { o.batch_size = 65537; })), ConfigError);
  EXPECT_THROW(Loader(data, pipeline, with([](LoaderOptions& o) { o.threads = 0; })), ConfigError);
  EXPECT_THROW(Loader(data, pipeline, with([](LoaderOptions& o) { o.prefetch_batches = 0; })), ConfigError);
  EXPECT_THROW(Loader(data, pipeline, with([](LoaderOptions& o) { o.max_pixels = 0; })), ConfigError);
  // A bad shard fails before anything streams (at construction or at the latest at start_epoch).
  EXPECT_THROW(
      {
        Loader loader(data, pipeline, with([](LoaderOptions& o) { o.shard = {2, 2}; }));
        loader.start_epoch(0);
      },
      ConfigError);
  Loader fine(data, pipeline, options(4, 1, 3));
  EXPECT_EQ(fine.tokens(), 12u);
  EXPECT_THROW(fine.next(), Error) << "next() before start_epoch()";
}

TEST(Loader, SpecWithoutFixedSizeOutputIsAConfigErrorOnFilesOnly) {
  TempDir dir;
  const Dataset files = noise_folder(dir, 4, 2, 40, 60);
  for (const char* text : {"hflip", "hflip | normalize(imagenet)", "jitter(0.2) | vflip"}) {
    SCOPED_TRACE(text);
    try {
      Loader loader(files, spec(text), options(2));
      ADD_FAILURE() << "expected ConfigError";
    } catch (const ConfigError& e) {
      EXPECT_TRUE(contains(e.what(), "crop")) << e.what();
    }
  }
  Loader cropped(files, spec("scale_crop(min=36,max=48,size=32) | hflip"), options(2));
  EXPECT_EQ(cropped.sample_shape(), (SampleShape{3, 32, 32}));

  // In memory, every image has the same size: a size-preserving spec is fine.
  const Dataset memory = memory_set(10);
  Loader loader(memory, spec("hflip | vflip"), options(4));
  EXPECT_EQ(loader.sample_shape(), (SampleShape{1, 28, 28}));
  const EpochRecord rec = stream(loader, 0);
  EXPECT_EQ(sorted(rec.ids()), iota_ids(10));
  EXPECT_EQ(rec.sizes(), (std::vector<std::size_t>{4, 4, 2}));
}

// ---------------------------------------------------------------------------------------------
// Loader: every sample once per epoch

TEST(Loader, FolderEverySampleOncePerEpoch) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 37, 3);
  LoaderOptions o = options(8, 2, 2, 11);
  Loader loader(data, spec(kTrainSpec), o);
  EXPECT_EQ(loader.sample_shape(), (SampleShape{3, 32, 32}));
  EXPECT_EQ(loader.tokens(), 16u);
  std::vector<std::vector<std::uint64_t>> orders;
  for (std::uint64_t epoch : {0u, 1u, 2u}) {
    SCOPED_TRACE("epoch " + std::to_string(epoch));
    const EpochRecord rec = stream(loader, epoch);
    EXPECT_EQ(rec.sizes(), (std::vector<std::size_t>{8, 8, 8, 8, 5}));
    EXPECT_EQ(sorted(rec.ids()), iota_ids(37));
    // Batch k is the k-th slice of the sampler's order.
    EXPECT_EQ(rec.ids(), epoch_order(37, {}, o.seed, epoch, true));
    for (std::size_t k = 0; k < rec.batches.size(); ++k) {
      EXPECT_EQ(rec.batches[k].index, k);
      EXPECT_EQ(rec.batches[k].shape, (SampleShape{3, 32, 32}));
    }
    expect_consistent(rec, data, epoch);
    orders.push_back(rec.ids());
  }
  EXPECT_NE(orders[0], orders[1]);
  EXPECT_NE(orders[1], orders[2]);
  EXPECT_EQ(loader.bad_files().count(), 0u);

  o.drop_last = true;
  Loader dropping(data, spec(kTrainSpec), o);
  const EpochRecord rec = stream(dropping, 1);
  EXPECT_EQ(rec.sizes(), (std::vector<std::size_t>{8, 8, 8, 8}));
  const auto order = epoch_order(37, {}, o.seed, 1, true);
  EXPECT_EQ(rec.ids(), std::vector<std::uint64_t>(order.begin(), order.begin() + 32));
  expect_consistent(rec, data, 1);
}

TEST(Loader, InMemoryEverySampleOncePerEpochRowsMatchIds) {
  const Dataset data = memory_set(50);
  const std::vector<std::uint8_t> original = *data.pixels;
  {
    // Identity pipeline: each row must be exactly its sample's pixels / 255.
    LoaderOptions o = options(16, 2, 2, 3);
    Loader loader(data, std::make_shared<const augment::Pipeline>(), o);
    EXPECT_EQ(loader.sample_shape(), (SampleShape{1, 28, 28}));
    for (std::uint64_t epoch : {0u, 1u}) {
      SCOPED_TRACE("epoch " + std::to_string(epoch));
      const EpochRecord rec = stream(loader, epoch);
      EXPECT_EQ(rec.sizes(), (std::vector<std::size_t>{16, 16, 16, 2}));
      EXPECT_EQ(sorted(rec.ids()), iota_ids(50));
      EXPECT_EQ(rec.ids(), epoch_order(50, {}, o.seed, epoch, true));
      expect_consistent(rec, data, epoch);
      for (const auto& [id, row] : rec.rows()) EXPECT_EQ(row, chw(data.image(id))) << "sample " << id;
    }
  }
  {
    // A random spec, without shuffling: ascending ids; drop_last drops the 2.
    LoaderOptions o = options(16, 2, 3, 3);
    o.shuffle = false;
    Loader loader(data, spec("hflip | pad_crop(pad=4,size=28) | erase(p=1,value=zero) | normalize(mean=[0.5],std=[0.25])"), o);
    const EpochRecord rec = stream(loader, 0);
    EXPECT_EQ(rec.ids(), iota_ids(50));
    EXPECT_EQ(rec.sizes(), (std::vector<std::size_t>{16, 16, 16, 2}));
    expect_consistent(rec, data, 0);
    const EpochRecord next = stream(loader, 1);
    EXPECT_EQ(next.ids(), iota_ids(50));
    EXPECT_GT(differing_rows(rec, next), 45u) << "epochs must augment differently";
    o.drop_last = true;
    Loader dropping(data, spec("hflip | pad_crop(pad=4,size=28)"), o);
    EXPECT_EQ(stream(dropping, 0).sizes(), (std::vector<std::size_t>{16, 16, 16}));
  }
  // The loader shares the in-memory pixels (no copy) and must never write into them.
  EXPECT_TRUE(*data.pixels == original) << "augmenting wrote into the data set's shared pixels";
}

TEST(Loader, ShardsSplitEachEpoch) {
  const Dataset data = memory_set(30);
  std::vector<std::uint64_t> all;
  for (int rank = 0; rank < 2; ++rank) {
    LoaderOptions o = options(4, 1, 2, 5);
    o.shard = {rank, 2};
    Loader loader(data, std::make_shared<const augment::Pipeline>(), o);
    const auto ids = stream(loader, 3).ids();
    EXPECT_EQ(ids, epoch_order(30, {}, 5, 3, true, {rank, 2}));
    EXPECT_EQ(ids.size(), 15u);
    all.insert(all.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(sorted(all), iota_ids(30));
}

// ---------------------------------------------------------------------------------------------
// Loader: determinism

TEST(Loader, SameSeedSameBatchesWhateverThreadsAndPrefetch) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 30, 3);
  const auto pipeline = spec(kTrainSpec);
  Loader reference_loader(data, pipeline, options(8, 1, 1, 21));
  const EpochRecord reference = stream(reference_loader, 3);
  ASSERT_EQ(reference.sizes(), (std::vector<std::size_t>{8, 8, 8, 6}));

  for (const auto& [threads, prefetch] : std::vector<std::pair<int, int>>{{2, 1}, {2, 4}, {1, 4}, {3, 2}}) {
    SCOPED_TRACE("threads " + std::to_string(threads) + " prefetch " + std::to_string(prefetch));
    Loader loader(data, pipeline, options(8, threads, prefetch, 21));
    (void)stream(loader, 0, 0ms, 2);  // an interrupted epoch first must not matter
    EXPECT_TRUE(same_batches(stream(loader, 3), reference));
  }
  // The same loader replays an epoch exactly.
  EXPECT_TRUE(same_batches(stream(reference_loader, 3), reference));

  // Another epoch: another order and other bytes for (nearly) every sample.
  const EpochRecord other_epoch = stream(reference_loader, 4);
  EXPECT_NE(other_epoch.ids(), reference.ids());
  EXPECT_EQ(sorted(other_epoch.ids()), iota_ids(30));
  EXPECT_GE(differing_rows(reference, other_epoch), 27u);

  // Another seed: likewise.
  Loader other_seed(data, pipeline, options(8, 2, 2, 22));
  const EpochRecord reseeded = stream(other_seed, 3);
  EXPECT_NE(reseeded.ids(), reference.ids());
  EXPECT_GE(differing_rows(reference, reseeded), 27u);
}

// ---------------------------------------------------------------------------------------------
// Loader: inline loading (a search trial with one core)

LoaderOptions inline_options(int batch, std::uint64_t seed = 7) {
  LoaderOptions o = options(batch, 1, 2, seed);
  o.inline_loading = true;
  return o;
}

TEST(Loader, InlineLoadingGivesTheGraphsBatches) {
  TempDir dir;
  const Dataset folder = noise_folder(dir, 30, 3);
  const Dataset memory = memory_set(45);
  for (const auto& [data, text] : {std::pair{&folder, kTrainSpec}, std::pair{&memory, "pad_crop(2,28) | hflip | normalize(none)"}}) {
    SCOPED_TRACE(data->name);
    const auto pipeline = spec(text);
    Loader graph(*data, pipeline, options(8, 2, 2, 21));
    Loader inline_loader(*data, pipeline, inline_options(8, 21));
    (void)stream(inline_loader, 0, 0ms, 2);  // an interrupted epoch first must not matter
    for (std::uint64_t epoch : {3u, 4u}) {
      SCOPED_TRACE("epoch " + std::to_string(epoch));
      const EpochRecord expected = stream(graph, epoch, 0ms, SIZE_MAX, "graph: ");
      const EpochRecord got = stream(inline_loader, epoch, 0ms, SIZE_MAX, "inline: ");
      EXPECT_TRUE(same_batches(got, expected));
      expect_consistent(got, *data, epoch);
    }
    // It loads what the consumer asks for and no more: one batch at a time, nothing ahead.
    EXPECT_LE(inline_loader.in_flight_high_water(), 8u);
    EXPECT_GT(graph.in_flight_high_water(), 0u);
  }
}

TEST(Loader, InlineLoadingRethrowsAnErrorAndStopsCleanly) {
  Dataset broken = memory_set(40);
  broken.memory_index[13] = 100000;
  Loader loader(broken, std::make_shared<const augment::Pipeline>(), inline_options(4));
  try {
    within_time("streaming into an error", [&] {
      loader.start_epoch(0);
      while (loader.next()) {
      }
    });
    ADD_FAILURE() << "expected the sample's Error from next()";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "outside")) << e.what();
  }

  // Stopping mid-epoch: next() ends at once, and the next epoch is complete.
  const Dataset data = memory_set(40);
  Loader stopped(data, std::make_shared<const augment::Pipeline>(), inline_options(4, 17));
  ASSERT_EQ(stream(stopped, 0, 0ms, 3).batches.size(), 3u);
  stopped.stop();
  within_time("next() after stop()", [&] { EXPECT_FALSE(stopped.next()); });
  const EpochRecord next = stream(stopped, 1);
  EXPECT_EQ(next.ids(), epoch_order(40, {}, 17, 1, true));
  EXPECT_EQ(next.sizes(), std::vector<std::size_t>(10, 4));
}

// A run resumed mid-epoch starts at a batch: the batches from there on are the whole epoch's,
// byte for byte, with the graph (threads and an early start of the next epoch) and inline.
TEST(Loader, StartingAtABatchGivesTheRestOfTheEpoch) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 30, 3);
  const auto pipeline = spec(kTrainSpec);
  Loader whole(data, pipeline, options(8, 2, 2, 5));
  const EpochRecord full = stream(whole, 2);
  ASSERT_EQ(full.sizes(), (std::vector<std::size_t>{8, 8, 8, 6}));
  for (const bool inline_loading : {false, true}) {
    for (std::uint64_t first : {1u, 3u, 4u}) {
      SCOPED_TRACE(std::string(inline_loading ? "inline" : "graph") + ", from batch " + std::to_string(first));
      Loader loader(data, pipeline, inline_loading ? inline_options(8, 5) : options(8, 2, 2, 5));
      const EpochRecord rest = within_time("the rest of an epoch", [&] {
        EpochRecord out;
        loader.start_epoch(2, first);
        while (auto batch = loader.next()) out.batches.push_back(record(*batch));
        return out;
      });
      EpochRecord expected;
      expected.batches.assign(full.batches.begin() + static_cast<std::ptrdiff_t>(std::min<std::uint64_t>(first, 4)),
                              full.batches.end());
      EXPECT_TRUE(same_batches(rest, expected));
      EXPECT_TRUE(same_batches(stream(loader, 3), stream(whole, 3))) << "and the next epoch is whole";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Loader: the token bound

TEST(Loader, InFlightNeverExceedsTokens) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 48, 2, 40, 64);
  const auto pipeline = spec(kTrainSpec);
  {
    // Slow consumer: the graph fills every token while the consumer holds a batch.
    Loader slow(data, pipeline, options(4, 2, 3));
    ASSERT_EQ(slow.tokens(), 12u);
    const EpochRecord rec = stream(slow, 0, 8ms);
    EXPECT_EQ(sorted(rec.ids()), iota_ids(48));
    EXPECT_LE(slow.in_flight_high_water(), slow.tokens());
    EXPECT_GT(slow.in_flight_high_water(), 4u);
    EXPECT_EQ(slow.in_flight_high_water(), slow.tokens()) << "a slow consumer lets every token fill";
  }
  {
    // Fast consumer: the bound still holds, and prefetch does run ahead of the current batch.
    Loader fast(data, pipeline, options(4, 2, 3));
    for (std::uint64_t epoch : {0u, 1u}) EXPECT_EQ(sorted(stream(fast, epoch).ids()), iota_ids(48));
    EXPECT_LE(fast.in_flight_high_water(), fast.tokens());
    EXPECT_GT(fast.in_flight_high_water(), 4u) << "prefetch 3 must have more than one batch in flight";
  }
  {
    // prefetch 1: one batch of tokens, still a complete epoch (the consumer releases each batch).
    Loader tight(data, pipeline, options(4, 2, 1));
    EXPECT_EQ(sorted(stream(tight, 0, 1ms).ids()), iota_ids(48));
    EXPECT_LE(tight.in_flight_high_water(), 4u);
    EXPECT_GT(tight.in_flight_high_water(), 0u);
  }
}

// ---------------------------------------------------------------------------------------------
// Unusable files

/// 20 valid 32x32 images (16 PNG, 4 JPEG) and five unusable files, in two classes.
struct BadFolder {
  TempDir dir;
  Dataset data;
  std::map<std::string, fs::path> bad;  ///< kind -> path
  std::vector<std::uint64_t> valid;     ///< data-set indices of the valid images
  std::vector<std::uint64_t> bad_ids;

  BadFolder() {
    for (int i = 0; i < 20; ++i) {
      const std::string ext = i % 5 == 4 ? ".jpg" : ".png";
      dir.write("data/" + std::string(i % 2 ? "b" : "a") + "/ok" + std::to_string(100 + i) + ext,
                test::encode(test::noise_image(32, 32, 3, 500 + i), ext));
    }
    const Bytes jpeg = test::encode(test::noise_image(64, 64, 3, 77), ".jpg");
    bad["empty"] = dir.write("data/a/empty.jpg", {});
    bad["truncated"] = dir.write("data/a/truncated.jpg", Bytes(jpeg.begin(), jpeg.begin() + jpeg.size() / 2));
    bad["text"] = dir.write("data/b/text.jpg", text_bytes("this is not an image\n"));
    bad["huge"] = dir.write("data/b/huge.png", png_header(60000, 60000));
    bad["gif"] = dir.write("data/b/zanim.gif", gif_bytes());
    data = open_image_folder(dir.path() / "data");
    EXPECT_EQ(data.size(), 25u);
    for (const auto& [kind, path] : bad) bad_ids.push_back(index_of(data, path));
    std::sort(bad_ids.begin(), bad_ids.end());
    for (std::uint64_t i = 0; i < data.size(); ++i)
      if (!std::binary_search(bad_ids.begin(), bad_ids.end(), i)) valid.push_back(i);
  }
  /// The order's valid samples, in its order.
  std::vector<std::uint64_t> only_valid(const std::vector<std::uint64_t>& order) const {
    std::vector<std::uint64_t> out;
    for (auto id : order)
      if (std::binary_search(valid.begin(), valid.end(), id)) out.push_back(id);
    return out;
  }
};

TEST(BadFiles, CountedOnceDroppedFromBatchesExcludedNextEpoch) {
  BadFolder f;
  Warnings warnings;
  const LoaderOptions o = options(8, 2, 2, 13);
  Loader loader(f.data, spec(kIdentity32), o, warnings.sink());

  const EpochRecord first = stream(loader, 0);
  // Exactly the valid images, each once, in the sampler's order; batches got smaller.
  EXPECT_EQ(first.ids(), f.only_valid(epoch_order(25, {}, o.seed, 0, true)));
  EXPECT_EQ(sorted(first.ids()), f.valid);
  for (const auto& b : first.batches) {
    EXPECT_LE(b.ids.size(), 8u);
    EXPECT_GE(b.ids.size(), 1u);
  }
  expect_consistent(first, f.data, 0);
  // Compaction keeps every row with its id: the identity spec gives back the decoded file.
  for (const auto& [id, row] : first.rows())
    EXPECT_EQ(row, chw(augment::decode_file(f.data.paths[id]).image)) << f.data.paths[id];

  // Each bad file counted once, with its path and reason.
  EXPECT_EQ(loader.bad_files().count(), 5u);
  const auto entries = loader.bad_files().entries();
  ASSERT_EQ(entries.size(), 5u);
  for (const auto& [kind, path] : f.bad) {
    SCOPED_TRACE(kind);
    const auto it = entries.find(index_of(f.data, path));
    ASSERT_NE(it, entries.end());
    EXPECT_EQ(it->second.first, path.string());
    EXPECT_FALSE(it->second.second.empty());
  }
  EXPECT_TRUE(contains(entries.at(index_of(f.data, f.bad["truncated"])).second, "truncated"))
      << entries.at(index_of(f.data, f.bad["truncated"])).second;
  EXPECT_TRUE(contains(entries.at(index_of(f.data, f.bad["gif"])).second, "GIF"))
      << entries.at(index_of(f.data, f.bad["gif"])).second;
  EXPECT_TRUE(contains(entries.at(index_of(f.data, f.bad["huge"])).second, "limit"))
      << entries.at(index_of(f.data, f.bad["huge"])).second;
  auto lines = warnings.snapshot();
  EXPECT_EQ(lines.size(), 5u);
  for (const auto& [kind, path] : f.bad)
    EXPECT_EQ(std::count_if(lines.begin(), lines.end(),
                            [&](const std::string& l) { return contains(l, path.string()) && contains(l, "skipped"); }),
              1)
        << kind;
  EXPECT_TRUE(contains(loader.bad_files().summary(), "5 files")) << loader.bad_files().summary();

  // Later epochs leave them out: full batches, no new report.
  for (std::uint64_t epoch : {1u, 2u}) {
    SCOPED_TRACE("epoch " + std::to_string(epoch));
    const EpochRecord rec = stream(loader, epoch);
    EXPECT_EQ(rec.sizes(), (std::vector<std::size_t>{8, 8, 4}));
    EXPECT_EQ(sorted(rec.ids()), f.valid);
    std::vector<bool> excluded(25, false);
    for (auto id : f.bad_ids) excluded[id] = true;
    EXPECT_EQ(rec.ids(), epoch_order(25, excluded, o.seed, epoch, true));
    expect_consistent(rec, f.data, epoch);
  }
  EXPECT_EQ(loader.bad_files().count(), 5u);
  EXPECT_EQ(warnings.snapshot().size(), 5u);
}

TEST(BadFiles, InlineLoadingCountsTheSameSkips) {
  BadFolder f;
  Warnings warnings;
  Loader loader(f.data, spec(kIdentity32), inline_options(8, 13), warnings.sink());
  const EpochRecord first = stream(loader, 0);
  EXPECT_EQ(first.ids(), f.only_valid(epoch_order(25, {}, 13, 0, true)));
  EXPECT_EQ(loader.bad_files().count(), 5u);
  EXPECT_EQ(warnings.snapshot().size(), 5u);
  const EpochRecord second = stream(loader, 1);
  EXPECT_EQ(second.sizes(), (std::vector<std::size_t>{8, 8, 4}));
  EXPECT_EQ(sorted(second.ids()), f.valid);
  EXPECT_EQ(warnings.snapshot().size(), 5u) << "a skipped file is reported once";

  Loader graph(f.data, spec(kIdentity32), options(8, 2, 2, 13));
  EXPECT_TRUE(same_batches(first, stream(graph, 0)));
}

TEST(BadFiles, SameWithTheDecodedImageCache) {
  BadFolder f;
  LoaderOptions o = options(8, 2, 2, 13);
  o.cache_mb = 16;
  Loader loader(f.data, spec(kIdentity32), o);
  const EpochRecord first = stream(loader, 0);
  EXPECT_EQ(sorted(first.ids()), f.valid);
  EXPECT_EQ(loader.bad_files().count(), 5u);
  EXPECT_EQ(loader.cache_bytes(), 20u * 32 * 32 * 3);
  const EpochRecord second = stream(loader, 1);
  EXPECT_EQ(second.sizes(), (std::vector<std::size_t>{8, 8, 4}));
  for (const auto& [id, row] : second.rows())
    EXPECT_EQ(row, chw(augment::decode_file(f.data.paths[id]).image)) << f.data.paths[id];
  EXPECT_EQ(loader.bad_files().count(), 5u);
}

TEST(BadFiles, ShardsStayDisjointAndCompleteAfterExclusions) {
  // Data-parallel training: each rank streams its slice and finds only the bad files in it, so
  // the ranks' excluded sets differ. Every later epoch must still split the usable samples
  // between the ranks: none twice, none left out.
  BadFolder f;
  std::vector<std::unique_ptr<Loader>> ranks;
  for (int rank = 0; rank < 2; ++rank) {
    LoaderOptions o = options(4, 2, 2, 19);
    o.shard = {rank, 2};
    // The bad-file counts are checked after epoch 0: no early start of epoch 1 (which would
    // already find bad files of its own slice).
    o.prefetch_next_epoch = false;
    ranks.push_back(std::make_unique<Loader>(f.data, spec(kIdentity32), o));
  }
  for (std::uint64_t epoch : {0u, 1u, 2u}) {
    SCOPED_TRACE("epoch " + std::to_string(epoch));
    std::vector<std::uint64_t> all;
    for (auto& loader : ranks) {
      const auto ids = stream(*loader, epoch).ids();
      all.insert(all.end(), ids.begin(), ids.end());
    }
    EXPECT_EQ(sorted(all), f.valid) << "the ranks' slices overlap or miss samples";
    if (epoch == 0) {
      EXPECT_EQ(ranks[0]->bad_files().count() + ranks[1]->bad_files().count(), 5u) << "epoch 0 splits the bad files";
    }
  }
}

TEST(BadFiles, AllUnusableEndsTheEpochThenIsAnError) {
  TempDir dir;
  dir.write("data/a/empty.jpg", {});
  dir.write("data/a/text.png", text_bytes("no"));
  dir.write("data/b/anim.gif", gif_bytes());
  const Dataset data = open_image_folder(dir.path() / "data");
  Loader loader(data, spec(kTrainSpec), options(2, 2, 1));
  const EpochRecord rec = stream(loader, 0);  // must end, not hang on batches that never fill
  EXPECT_TRUE(rec.batches.empty());
  EXPECT_EQ(loader.bad_files().count(), 3u);
  try {
    within_time("start_epoch(1)", [&] { loader.start_epoch(1); });
    ADD_FAILURE() << "expected DataError: no usable image left";
  } catch (const DataError& e) {
    EXPECT_TRUE(contains(e.what(), "no usable image")) << e.what();
  }
}

TEST(BadFiles, StrictModeThrowsDataErrorNamingTheFile) {
  TempDir dir;
  const Dataset valid_only = noise_folder(dir, 12, 2, 40, 60, ".jpg", "valid");
  noise_folder(dir, 12, 2, 40, 60, ".jpg", "mixed");
  const fs::path text = dir.write("mixed/c1/not_an_image.jpg", text_bytes("this is not an image\n"));
  const Dataset mixed = open_image_folder(dir.path() / "mixed");
  ASSERT_EQ(mixed.size(), 13u);
  for (std::size_t cache_mb : {0u, 16u}) {
    SCOPED_TRACE(cache_mb ? "with cache" : "without cache");
    LoaderOptions o = options(4, 2, 2);
    o.strict = true;
    o.cache_mb = cache_mb;
    {
      Loader loader(valid_only, spec(kTrainSpec), o);
      EXPECT_EQ(sorted(stream(loader, 0).ids()), iota_ids(12)) << "strict mode streams valid files";
    }
    auto loader = std::make_unique<Loader>(mixed, spec(kTrainSpec), o);
    std::size_t batches = 0;
    try {
      within_time("strict streaming", [&] {
        loader->start_epoch(0);
        while (auto batch = loader->next()) ++batches;
      });
      ADD_FAILURE() << "expected DataError for " << text;
    } catch (const DataError& e) {
      EXPECT_TRUE(contains(e.what(), text.string())) << "the error must name the file: " << e.what();
      EXPECT_EQ(e.path(), text.string()) << e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "expected DataError, got: " << e.what();
    }
    EXPECT_LT(batches, 4u) << "13 samples make 4 batches; one of them holds the bad file";
    // After the error: next() does not hang (it rethrows or ends), nor do destruction or restart.
    within_time("next() after the error", [&] {
      try {
        while (loader->next()) {
        }
      } catch (const std::exception&) {
      }
    });
    within_time("destroying the loader after the error", [&] { loader.reset(); });
  }
}

TEST(BadFiles, EmptyDataSetIsAnErrorAtConstruction) {
  Dataset files;
  files.name = "nothing";
  files.class_names = {"a"};
  try {
    Loader loader(files, spec(kTrainSpec), options(4));
    ADD_FAILURE() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_TRUE(contains(e.what(), "empty")) << e.what();
  }
  Dataset memory = memory_set(0);
  EXPECT_THROW(Loader(memory, std::make_shared<const augment::Pipeline>(), options(4)), DataError);
}

TEST(Loader, ImagesOverMaxPixelsAreSkippedNamingTheLimit) {
  TempDir dir;
  for (int i = 0; i < 10; ++i)
    dir.write("data/a/small" + std::to_string(i) + ".png", test::encode(test::noise_image(40, 40, 3, i), ".png"));
  std::vector<fs::path> big;
  for (int i = 0; i < 3; ++i)
    big.push_back(dir.write("data/b/big" + std::to_string(i) + ".jpg", test::encode(test::noise_image(100, 80, 3, 50 + i))));
  const Dataset data = open_image_folder(dir.path() / "data");
  for (std::size_t cache_mb : {0u, 16u}) {
    SCOPED_TRACE(cache_mb ? "with cache" : "without cache");
    LoaderOptions o = options(4, 2, 2);
    o.max_pixels = 5000;  // 40x40 = 1600 passes, 100x80 = 8000 does not
    o.cache_mb = cache_mb;
    Loader loader(data, spec(kTrainSpec), o);
    const EpochRecord rec = stream(loader, 0);
    std::vector<std::uint64_t> small;
    for (std::uint64_t i = 0; i < data.size(); ++i)
      if (data.labels[i] == 0) small.push_back(i);
    EXPECT_EQ(sorted(rec.ids()), small);
    ASSERT_EQ(loader.bad_files().count(), 3u);
    for (const auto& path : big) {
      const auto entries = loader.bad_files().entries();
      const auto it = entries.find(index_of(data, path));
      ASSERT_NE(it, entries.end()) << path;
      EXPECT_TRUE(contains(it->second.second, "limit")) << it->second.second;
      EXPECT_TRUE(contains(it->second.second, "5000")) << it->second.second;
    }
    EXPECT_EQ(stream(loader, 1).sizes(), (std::vector<std::size_t>{4, 4, 2}));
  }
}

TEST(BadFiles, FileGoneAfterListingIsSkippedNamingIt) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 10, 2, 40, 60);
  const fs::path gone = data.paths[3];
  fs::remove(gone);
  for (std::size_t cache_mb : {0u, 16u}) {
    SCOPED_TRACE(cache_mb ? "with cache" : "without cache");
    LoaderOptions o = options(4);
    o.cache_mb = cache_mb;
    Loader loader(data, spec(kTrainSpec), o);
    const auto ids = stream(loader, 0).ids();
    EXPECT_EQ(ids.size(), 9u);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), 3u), 0);
    const auto entries = loader.bad_files().entries();
    ASSERT_EQ(entries.size(), 1u);
    EXPECT_EQ(entries.begin()->first, 3u);
    EXPECT_EQ(entries.begin()->second.first, gone.string());
    EXPECT_EQ(stream(loader, 1).sizes(), (std::vector<std::size_t>{4, 4, 1}));
  }
}

TEST(Loader, ErrorInsideANodeIsRethrownByNextNeverAHang) {
  // An in-memory sample whose index lies outside the pixels: Dataset::image throws Error, which
  // is not a per-sample DataError, so it must end the run and come out of next().
  Dataset data = memory_set(40);
  data.memory_index[13] = 100000;
  Loader loader(data, std::make_shared<const augment::Pipeline>(), options(4, 2, 2));
  for (std::uint64_t epoch : {0u, 1u}) {
    SCOPED_TRACE("epoch " + std::to_string(epoch));
    std::size_t batches = 0;
    try {
      within_time("streaming into a node error", [&] {
        loader.start_epoch(epoch);
        while (loader.next()) ++batches;
      });
      ADD_FAILURE() << "expected the node's Error from next()";
    } catch (const DataError& e) {
      ADD_FAILURE() << "not a bad file, a broken data set: " << e.what();
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), "outside")) << e.what();
    }
    EXPECT_LT(batches, 10u);
    within_time("next() after the error", [&] {
      try {
        while (loader.next()) {
        }
      } catch (const Error&) {
      }
    });
  }
  EXPECT_EQ(loader.bad_files().count(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Early stop and lifetime

TEST(Loader, StopMidEpochIsPromptAndTheNextEpochIsComplete) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 64, 4, 40, 80);
  LoaderOptions o = options(4, 2, 2, 17);
  Loader loader(data, spec(kTrainSpec), o);
  EXPECT_NO_THROW(loader.stop()) << "stop() before any epoch";

  ASSERT_EQ(stream(loader, 0, 0ms, 3).batches.size(), 3u);
  const auto start = Clock::now();
  within_time("stop()", [&] { loader.stop(); });
  EXPECT_LT(seconds_since(start), 5.0) << "stop() must return promptly";
  within_time("stop() twice", [&] { loader.stop(); });
  within_time("next() after stop()", [&] {
    while (loader.next()) {  // what was already assembled, then the end: never a hang
    }
  });

  const EpochRecord next = stream(loader, 1);
  EXPECT_EQ(next.ids(), epoch_order(64, {}, o.seed, 1, true));
  EXPECT_EQ(next.sizes(), std::vector<std::size_t>(16, 4));
  expect_consistent(next, data, 1);

  // start_epoch also stops an epoch in the middle; the one after is complete and as it would be.
  ASSERT_EQ(stream(loader, 2, 0ms, 2).batches.size(), 2u);
  const EpochRecord after = stream(loader, 3);
  EXPECT_EQ(after.ids(), epoch_order(64, {}, o.seed, 3, true));
  Loader fresh(data, spec(kTrainSpec), o);
  EXPECT_TRUE(same_batches(after, stream(fresh, 3)));
  EXPECT_EQ(loader.bad_files().count(), 0u);
}

TEST(Loader, BatchHeldAcrossStopAndRestartStaysValid) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 40, 2, 40, 80);
  Loader loader(data, spec(kTrainSpec), options(4, 2, 2));
  within_time("holding a batch across epochs", [&] {
    loader.start_epoch(0);
    std::optional<Batch> held = loader.next();
    ASSERT_TRUE(held);
    const BatchRecord copy = record(*held);
    loader.stop();
    const EpochRecord next = stream(loader, 1);  // nested watchdog is fine
    EXPECT_EQ(sorted(next.ids()), iota_ids(40));
    EpochRecord a, b;
    a.batches.push_back(copy);
    b.batches.push_back(record(*held));
    EXPECT_TRUE(same_batches(a, b)) << "a held batch must not be overwritten by the next epoch";
    held.reset();
  });
  EXPECT_EQ(sorted(stream(loader, 2).ids()), iota_ids(40));
}

TEST(Loader, DestroyingTheLoaderWhileABatchIsHeldMidEpoch) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 96, 3, 40, 80);
  const auto pipeline = spec(kTrainSpec);
  within_time("destroying the loader before a held batch", [&] {
    auto loader = std::make_unique<Loader>(data, pipeline, options(4, 2, 4));
    loader->start_epoch(0);
    std::optional<Batch> held = loader->next();
    ASSERT_TRUE(held);
    const BatchRecord copy = record(*held);
    loader.reset();  // mid-epoch: 23 more batches to go, the graph still running
    EpochRecord a, b;
    a.batches.push_back(copy);
    b.batches.push_back(record(*held));
    EXPECT_TRUE(same_batches(a, b));
    held.reset();  // gives tokens back to a run whose loader is gone
  });
}

TEST(Loader, NextNeverBlocksForeverWhileTheConsumerHoldsEveryToken) {
  // prefetch 1: tokens = one batch. `b = loader.next()` (or keeping the previous batch for any
  // reason) asks for batch 1 while batch 0 still holds every token, so batch 1 can never fill.
  // next() must not wait for ever: it should say so (an Error) or deliver the batch.
  const Dataset data = memory_set(40);
  Loader loader(data, std::make_shared<const augment::Pipeline>(), options(4, 2, 1));
  std::optional<Batch> held = within_time("the first batch", [&] {
    loader.start_epoch(0);
    return loader.next();
  });
  ASSERT_TRUE(held);
  auto pending = std::async(std::launch::async, [&] { return loader.next(); });
  EXPECT_TRUE(pending.wait_for(3s) == std::future_status::ready)
      << "next() blocks for ever while the consumer holds all " << loader.tokens()
      << " tokens; it should throw an Error naming the cause (release the batch or raise prefetch)";
  held.reset();  // gives the tokens back: a blocked next() can now finish
  if (pending.wait_for(kWatchdog) == std::future_status::timeout) {
    ADD_FAILURE() << "next() still blocked after the held batch was released";
    std::fflush(nullptr);
    std::abort();
  }
  try {
    std::optional<Batch> next = pending.get();
    ASSERT_TRUE(next);
    EXPECT_EQ(next->index(), 1u);
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "token") || contains(e.what(), "prefetch")) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// The decoded-image cache

/// What the data set's images take once decoded (the most a cache can hold of it).
std::size_t decoded_bytes(const Dataset& data) {
  std::size_t total = 0;
  for (const auto& path : data.paths) {
    const cv::Mat image = augment::decode_file(path).image;
    total += image.total() * image.elemSize();
  }
  return total;
}

TEST(Loader, SharedImageCacheServesSeveralLoadersWithinItsBudget) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 24, 3, 150, 220);
  const std::size_t total_bytes = decoded_bytes(data);
  const auto pipeline = spec(kTrainSpec);
  LoaderOptions own_o = options(8, 2, 2, 31);
  own_o.cache_mb = 100;
  own_o.prefetch_next_epoch = false;  // epoch 1 read ahead would count as hits
  LoaderOptions shared_o = own_o;
  shared_o.shared_cache = std::make_shared<ImageCache>(std::size_t{100} << 20);
  Loader own(data, pipeline, own_o);
  Loader first(data, pipeline, shared_o);  // two trials of a search, say
  Loader second(data, pipeline, shared_o);
  const EpochRecord reference = stream(own, 0);
  // The same bytes as a loader's own cache (both take the whole-image path).
  EXPECT_TRUE(same_batches(stream(first, 0), reference));
  EXPECT_EQ(shared_o.shared_cache->bytes(), total_bytes);
  EXPECT_EQ(shared_o.shared_cache->misses(), 24u);
  // The second loader decodes nothing: every image comes from the first one's decode.
  EXPECT_TRUE(same_batches(stream(second, 0), reference));
  EXPECT_EQ(shared_o.shared_cache->misses(), 24u);
  EXPECT_EQ(shared_o.shared_cache->hits(), 24u);
  EXPECT_EQ(own.cache_bytes(), total_bytes);
  EXPECT_EQ(first.cache_bytes(), 0u) << "a shared cache replaces the loader's own";

  // A budget smaller than the data: bounded, and the bytes still the same.
  LoaderOptions tight_o = own_o;
  tight_o.shared_cache = std::make_shared<ImageCache>(std::size_t{1} << 20);
  Loader tight(data, pipeline, tight_o);
  EXPECT_TRUE(same_batches(stream(tight, 0), reference));
  EXPECT_GT(tight_o.shared_cache->bytes(), 0u);
  EXPECT_LE(tight_o.shared_cache->bytes(), std::size_t{1} << 20);
}

TEST(ImageCache, KeysByPathAndChannelsAndKeepsTheFirstWithinBudget) {
  ImageCache cache(1000);
  const cv::Mat grey(10, 10, CV_8UC1, cv::Scalar(7)), colour(10, 10, CV_8UC3, cv::Scalar(1, 2, 3));
  EXPECT_TRUE(cache.get("a.png", 1).empty());
  cache.offer("a.png", 1, grey);
  cache.offer("a.png", 3, colour);
  EXPECT_EQ(cache.bytes(), 400u);
  EXPECT_EQ(cache.get("a.png", 1).channels(), 1);
  EXPECT_EQ(cache.get("a.png", 3).channels(), 3);
  cache.offer("a.png", 1, colour);  // already there: kept as first offered, not counted twice
  EXPECT_EQ(cache.get("a.png", 1).channels(), 1);
  EXPECT_EQ(cache.bytes(), 400u);
  cache.offer("b.png", 3, cv::Mat(20, 20, CV_8UC3));  // 1200 bytes: over the budget, not kept
  EXPECT_TRUE(cache.get("b.png", 3).empty());
  EXPECT_EQ(cache.bytes(), 400u);
  EXPECT_EQ(cache.hits(), 3u);
  EXPECT_EQ(cache.misses(), 2u);
}

TEST(Loader, DecodedImageCacheFillsAndDoesNotChangeTheBytes) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 24, 3, 150, 220);
  const std::size_t total_bytes = decoded_bytes(data);
  ASSERT_GT(total_bytes, 2u << 20) << "the 1 MB budget must leave most images out";
  const auto pipeline = spec(kTrainSpec);

  LoaderOptions big_o = options(8, 2, 2, 31);
  big_o.cache_mb = 100;
  LoaderOptions small_o = big_o;
  small_o.cache_mb = 1;
  LoaderOptions serial_o = big_o;
  serial_o.threads = 1;
  serial_o.prefetch_batches = 1;
  Loader big(data, pipeline, big_o);
  Loader small(data, pipeline, small_o);
  Loader serial(data, pipeline, serial_o);
  EXPECT_EQ(big.cache_bytes(), 0u);

  std::vector<EpochRecord> epochs;
  for (std::uint64_t epoch : {0u, 1u, 2u}) {
    SCOPED_TRACE("epoch " + std::to_string(epoch));
    const EpochRecord a = stream(big, epoch);
    const EpochRecord b = stream(small, epoch);
    const EpochRecord c = stream(serial, epoch);
    EXPECT_EQ(sorted(a.ids()), iota_ids(24));
    // Cached or read again, every sample takes the same (reference) path: same bytes.
    EXPECT_TRUE(same_batches(a, b));
    EXPECT_TRUE(same_batches(a, c));
    if (epoch == 0) {
      EXPECT_EQ(big.cache_bytes(), total_bytes) << "everything fits in 100 MB";
      EXPECT_GT(small.cache_bytes(), 0u);
      EXPECT_LE(small.cache_bytes(), std::size_t{1} << 20);
      EXPECT_LT(small.cache_bytes(), total_bytes / 2);
    }
    epochs.push_back(a);
  }
  EXPECT_EQ(big.cache_bytes(), total_bytes) << "the cache does not grow past the data set";
  // Cached images are augmented afresh every epoch.
  EXPECT_GE(differing_rows(epochs[0], epochs[1]), 22u);
  EXPECT_GE(differing_rows(epochs[1], epochs[2]), 22u);
  // The cached images themselves stay as decoded: a cache-hit epoch replays exactly.
  EXPECT_TRUE(same_batches(stream(big, 1), epochs[1]));

  LoaderOptions off = big_o;
  off.cache_mb = 0;
  Loader uncached(data, pipeline, off);
  EXPECT_EQ(sorted(stream(uncached, 0).ids()), iota_ids(24));
  EXPECT_EQ(uncached.cache_bytes(), 0u);
}

// ---------------------------------------------------------------------------------------------
// Prefetch overlaps a slow consumer

TEST(Loader, PrefetchHidesDecodingFromASlowConsumer) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 96, 4, 40, 64);
  Loader loader(data, spec(kTrainSpec), options(8, 2, 4));
  const auto start = Clock::now();
  const EpochRecord rec = stream(loader, 0, 30ms);
  const double total = seconds_since(start);
  EXPECT_EQ(sorted(rec.ids()), iota_ids(96));
  EXPECT_GE(total, 12 * 0.030);
  EXPECT_GE(loader.wait_seconds(), 0.0);
  EXPECT_LT(loader.wait_seconds(), 0.2 * total)
      << "the consumer waited " << loader.wait_seconds() << " s of " << total << " s";
}

// The early start of epoch e+1 (prefetch_next_epoch) must not change a single byte: the next
// epoch's order is only fixed once every sample of epoch e is processed.
TEST(Loader, EarlyStartOfTheNextEpochChangesNothing) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 30, 3);
  const auto pipeline = spec(kTrainSpec);
  LoaderOptions eager = options(8, 2, 2, 13);
  LoaderOptions lazy = eager;
  lazy.prefetch_next_epoch = false;
  Loader a(data, pipeline, eager);
  Loader b(data, pipeline, lazy);
  for (std::uint64_t epoch : {0u, 1u, 2u}) {
    SCOPED_TRACE("epoch " + std::to_string(epoch));
    EXPECT_TRUE(same_batches(stream(a, epoch, 2ms), stream(b, epoch)));
  }
  // Asking for another epoch than the one started early discards the early start.
  Loader fresh(data, pipeline, lazy);
  EXPECT_TRUE(same_batches(stream(a, 7), stream(fresh, 7)));
}

}  // namespace
}  // namespace augflow::pipeline
