// The loader's batch shares (LoaderOptions::batch_share, data-parallel training): loaders whose
// shares split every global batch give, batch by batch and concatenated in share order, the
// unshared loader's batch (bytes, labels, sample ids, positions); an unusable file leaves a gap
// in its share's positions and is excluded by that loader's next epoch; resuming at a global
// batch; batches with an empty share are not delivered; epoch_positions() counts the epoch.
//
// Every input is generated in a TempDir (or in memory). Every streaming loop runs under a
// watchdog: a loader that hangs is the bug, so after 60 s the test fails and the process aborts.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>

#include "augment/pipeline.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "pipeline/dataset.hpp"
#include "pipeline/loader.hpp"
#include "pipeline/sampler.hpp"
#include "tests/fixtures.hpp"
#include "tests/loader_fixtures.hpp"

namespace augflow::pipeline {
namespace {

namespace fs = std::filesystem;
using test::TempDir;
using namespace std::chrono_literals;
using namespace loader_test;
using Share = std::function<std::pair<std::size_t, std::size_t>(std::size_t)>;

// ---------------------------------------------------------------------------------------------
// Batches copied out of the loader (a Batch holds tokens: keeping them would stall the loader)

struct BatchRecord {
  std::uint64_t epoch = 0;
  std::uint64_t index = 0;
  std::size_t batch_positions = 0;
  std::size_t row_floats = 0;  ///< floats per sample: views x C x H x W
  std::vector<float> data;
  std::vector<int> labels;
  std::vector<std::uint64_t> ids;
  std::vector<std::uint32_t> positions;
};

BatchRecord record(const Batch& batch) {
  BatchRecord r;
  r.epoch = batch.epoch();
  r.index = batch.index();
  r.batch_positions = batch.batch_positions();
  r.row_floats = static_cast<std::size_t>(batch.views()) * batch.shape().floats();
  r.data.assign(batch.data(), batch.data() + static_cast<std::size_t>(batch.size()) * r.row_floats);
  r.labels.assign(batch.labels().begin(), batch.labels().end());
  r.ids.assign(batch.sample_ids().begin(), batch.sample_ids().end());
  r.positions.assign(batch.positions().begin(), batch.positions().end());
  EXPECT_EQ(r.positions.size(), static_cast<std::size_t>(batch.size()));
  EXPECT_TRUE(std::is_sorted(r.positions.begin(), r.positions.end()));
  EXPECT_TRUE(std::adjacent_find(r.positions.begin(), r.positions.end()) == r.positions.end())
      << "positions must increase strictly";
  for (const auto p : r.positions) EXPECT_LT(p, r.batch_positions);
  return r;
}

struct EpochRecord {
  std::vector<BatchRecord> batches;

  std::vector<std::uint64_t> indices() const {
    std::vector<std::uint64_t> out;
    for (const auto& b : batches) out.push_back(b.index);
    return out;
  }
  std::vector<std::uint64_t> ids() const {
    std::vector<std::uint64_t> out;
    for (const auto& b : batches) out.insert(out.end(), b.ids.begin(), b.ids.end());
    return out;
  }
};

/// Streams `epoch` from global batch `first_batch` to its end, under the watchdog.
EpochRecord stream(Loader& loader, std::uint64_t epoch, std::uint64_t first_batch = 0) {
  return within_time("streaming epoch " + std::to_string(epoch), [&] {
    EpochRecord out;
    loader.start_epoch(epoch, first_batch);
    while (std::optional<Batch> batch = loader.next()) out.batches.push_back(record(*batch));
    return out;
  });
}

::testing::AssertionResult same_batch(const BatchRecord& x, const BatchRecord& y) {
  if (x.index != y.index || x.epoch != y.epoch)
    return ::testing::AssertionFailure() << "epoch/index " << x.epoch << "/" << x.index << " vs " << y.epoch << "/"
                                         << y.index;
  if (x.ids != y.ids) return ::testing::AssertionFailure() << "batch " << x.index << ": sample ids differ";
  if (x.labels != y.labels) return ::testing::AssertionFailure() << "batch " << x.index << ": labels differ";
  if (x.positions != y.positions) return ::testing::AssertionFailure() << "batch " << x.index << ": positions differ";
  if (x.batch_positions != y.batch_positions)
    return ::testing::AssertionFailure() << "batch " << x.index << ": batch_positions " << x.batch_positions
                                         << " vs " << y.batch_positions;
  if (x.data.size() != y.data.size())
    return ::testing::AssertionFailure() << "batch " << x.index << ": " << x.data.size() << " vs " << y.data.size()
                                         << " floats";
  for (std::size_t i = 0; i < x.data.size(); ++i)
    if (std::memcmp(&x.data[i], &y.data[i], sizeof(float)) != 0)
      return ::testing::AssertionFailure() << "batch " << x.index << ": float " << i << " (sample "
                                           << x.ids[i / x.row_floats] << ") differs: " << x.data[i] << " vs "
                                           << y.data[i];
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult same_batches(const EpochRecord& a, const EpochRecord& b) {
  if (a.batches.size() != b.batches.size())
    return ::testing::AssertionFailure() << a.batches.size() << " vs " << b.batches.size() << " batches";
  for (std::size_t k = 0; k < a.batches.size(); ++k)
    if (auto same = same_batch(a.batches[k], b.batches[k]); !same) return same;
  return ::testing::AssertionSuccess();
}

/// The shares' batches of one epoch (parts[r] streamed with shares[r]) against the unshared
/// loader's: every part batch is a batch of the whole epoch, with positions inside its share;
/// concatenated in share order, each global batch's parts are the whole batch, byte for byte. A
/// part is missing exactly when its share is empty or all its samples were unusable.
void expect_shares_make_the_whole(const std::vector<EpochRecord>& parts, const std::vector<Share>& shares,
                                  const EpochRecord& whole) {
  ASSERT_EQ(parts.size(), shares.size());
  std::map<std::uint64_t, const BatchRecord*> whole_by_index;
  for (const auto& b : whole.batches) whole_by_index[b.index] = &b;
  std::vector<std::map<std::uint64_t, const BatchRecord*>> by_index(parts.size());
  for (std::size_t r = 0; r < parts.size(); ++r) {
    const auto indices = parts[r].indices();
    EXPECT_TRUE(std::adjacent_find(indices.begin(), indices.end(), std::greater_equal<>()) == indices.end())
        << "share " << r << ": batch indices must increase";
    for (const auto& b : parts[r].batches) {
      EXPECT_TRUE(whole_by_index.count(b.index)) << "share " << r << " delivered batch " << b.index
                                                 << ", which the unshared loader has not";
      by_index[r][b.index] = &b;
    }
  }
  for (const auto& w : whole.batches) {
    SCOPED_TRACE("global batch " + std::to_string(w.index));
    BatchRecord joined;
    joined.epoch = w.epoch;
    joined.index = w.index;
    joined.batch_positions = w.batch_positions;
    joined.row_floats = w.row_floats;
    for (std::size_t r = 0; r < parts.size(); ++r) {
      const auto [begin, end] = shares[r](w.batch_positions);
      const std::size_t in_share = static_cast<std::size_t>(std::count_if(
          w.positions.begin(), w.positions.end(), [&](std::uint32_t p) { return p >= begin && p < end; }));
      const auto it = by_index[r].find(w.index);
      if (in_share == 0) {
        EXPECT_EQ(it, by_index[r].end()) << "share " << r << " [" << begin << ", " << end
                                         << ") has no usable sample of this batch but delivered it";
        continue;
      }
      ASSERT_NE(it, by_index[r].end()) << "share " << r << " [" << begin << ", " << end << ") did not deliver it";
      const BatchRecord& b = *it->second;
      EXPECT_EQ(b.epoch, w.epoch);
      EXPECT_EQ(b.batch_positions, w.batch_positions) << "share " << r;
      EXPECT_EQ(b.ids.size(), in_share) << "share " << r;
      for (const auto p : b.positions) {
        EXPECT_GE(p, begin) << "share " << r;
        EXPECT_LT(p, end) << "share " << r;
      }
      joined.data.insert(joined.data.end(), b.data.begin(), b.data.end());
      joined.labels.insert(joined.labels.end(), b.labels.begin(), b.labels.end());
      joined.ids.insert(joined.ids.end(), b.ids.begin(), b.ids.end());
      joined.positions.insert(joined.positions.end(), b.positions.begin(), b.positions.end());
    }
    EXPECT_TRUE(same_batch(joined, w));
  }
}

// ---------------------------------------------------------------------------------------------
// Inputs

/// Share r of n: positions [r*P/n, (r+1)*P/n) of a batch of P (the fixed-chunk rule).
Share chunk(std::size_t r, std::size_t n) {
  return [r, n](std::size_t positions) { return std::pair{r * positions / n, (r + 1) * positions / n}; };
}

std::vector<Share> chunks(std::size_t n) {
  std::vector<Share> out;
  for (std::size_t r = 0; r < n; ++r) out.push_back(chunk(r, n));
  return out;
}

LoaderOptions shared(LoaderOptions o, Share share) {
  o.batch_share = std::move(share);
  return o;
}

/// `count` noise images data/c<k>/img<i>.jpg (class i % classes) of varied sizes.
/// `valid` 32x32 PNG images and one text file named .jpg, in two classes.
struct FolderWithABadFile {
  TempDir dir;
  Dataset data;
  fs::path bad_path;
  std::uint64_t bad = 0;  ///< its data-set index

  explicit FolderWithABadFile(int valid) {
    for (int i = 0; i < valid; ++i)
      dir.write("data/" + std::string(i % 2 ? "b" : "a") + "/ok" + std::to_string(100 + i) + ".png",
                test::encode(test::noise_image(32, 32, 3, 500 + i), ".png"));
    const std::string text = "this is not an image\n";
    bad_path = dir.write("data/b/not_an_image.jpg", std::vector<std::uint8_t>(text.begin(), text.end()));
    data = open_image_folder(dir.path() / "data");
    EXPECT_EQ(data.size(), static_cast<std::size_t>(valid + 1));
    bad = static_cast<std::uint64_t>(std::find(data.paths.begin(), data.paths.end(), bad_path) - data.paths.begin());
    EXPECT_LT(bad, data.size());
  }
};

std::vector<std::uint32_t> range(std::uint32_t begin, std::uint32_t end) {
  std::vector<std::uint32_t> out(end - begin);
  std::iota(out.begin(), out.end(), begin);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Shares split every batch

// 30 samples: batch 8 gives P = 8, 8, 8, 6 and batch 7 gives P = 7, 7, 7, 7, 2 (split three ways,
// the 2's first share is empty). Two epochs, so that the next epoch's early start runs shared too.
TEST(LoaderShare, SharesConcatenatedAreTheWholeBatch) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 30);
  const auto pipeline = spec(kTrainSpec);
  for (const int batch : {8, 7}) {
    Loader whole(data, pipeline, options(batch, 2, 2, 5));
    const std::vector<EpochRecord> expected = {stream(whole, 0), stream(whole, 1)};
    const std::size_t batches = (30 + batch - 1) / batch;
    for (const auto& epoch : expected) {
      // The unshared loader: batches 0..n-1, positions 0..P-1, the last one short.
      ASSERT_EQ(epoch.batches.size(), batches);
      for (std::size_t k = 0; k < batches; ++k) {
        const std::size_t p = std::min<std::size_t>(batch, 30 - k * batch);
        EXPECT_EQ(epoch.batches[k].index, k);
        EXPECT_EQ(epoch.batches[k].batch_positions, p);
        EXPECT_EQ(epoch.batches[k].positions, range(0, static_cast<std::uint32_t>(p)));
      }
    }
    for (const std::size_t n : {2u, 3u}) {
      for (const int threads : {1, 3}) {
        SCOPED_TRACE("batch " + std::to_string(batch) + ", " + std::to_string(n) + " shares, threads " +
                     std::to_string(threads));
        std::vector<std::unique_ptr<Loader>> loaders;
        for (std::size_t r = 0; r < n; ++r)
          loaders.push_back(std::make_unique<Loader>(data, pipeline, shared(options(batch, threads, 2, 5), chunk(r, n))));
        for (std::uint64_t epoch : {0u, 1u}) {
          SCOPED_TRACE("epoch " + std::to_string(epoch));
          std::vector<EpochRecord> parts;
          for (auto& loader : loaders) parts.push_back(stream(*loader, epoch));
          expect_shares_make_the_whole(parts, chunks(n), expected[epoch]);
          if (batch == 7 && n == 3) {
            EXPECT_EQ(parts[0].indices(), (std::vector<std::uint64_t>{0, 1, 2, 3})) << "the 2's share [0, 0)";
          }
        }
        for (auto& loader : loaders) EXPECT_EQ(loader->bad_files().count(), 0u);
      }
    }
  }
}

// The other ways of loading (inline, the decoded-image cache, test-time views) give the same rows
// with a share.
TEST(LoaderShare, InlineCacheAndViewsGiveTheWholeBatchToo) {
  TempDir dir;
  const Dataset folder = noise_folder(dir, 30);
  const auto pipeline = spec(kTrainSpec);
  for (const char* mode : {"inline", "cache"}) {
    SCOPED_TRACE(mode);
    LoaderOptions base = options(7, 2, 2, 9);
    if (std::string(mode) == "inline") base.inline_loading = true;
    // Cached sets take the reference path (whole image, then the transforms): the unshared
    // loader to compare with is cached too.
    if (std::string(mode) == "cache") base.cache_mb = 16;
    Loader whole(folder, pipeline, base);
    const EpochRecord expected = stream(whole, 3);
    std::vector<EpochRecord> parts;
    for (std::size_t r = 0; r < 3; ++r) {
      const LoaderOptions o = shared(base, chunk(r, 3));
      Loader loader(folder, pipeline, o);
      (void)stream(loader, 2);  // fills the cache; the epoch asked for next is another one
      parts.push_back(stream(loader, 3));
      if (o.cache_mb) {
        EXPECT_GT(loader.cache_bytes(), 0u);
      }
    }
    expect_shares_make_the_whole(parts, chunks(3), expected);
  }

  // Ten views per image: a share's sample is ten consecutive rows, as without a share.
  const Dataset memory = memory_set(45);
  LoaderOptions o = options(8, 2, 2, 4);
  o.views = std::make_shared<const augment::ViewPipeline>(
      augment::parse_views("tencrop(resize=32,size=28) | normalize(preset=none)"));
  const auto none = std::make_shared<const augment::Pipeline>();
  Loader whole_views(memory, none, o);
  const EpochRecord expected_views = stream(whole_views, 1);
  ASSERT_FALSE(expected_views.batches.empty());
  EXPECT_EQ(expected_views.batches[0].row_floats, 10u * 28 * 28);
  std::vector<EpochRecord> parts;
  for (std::size_t r = 0; r < 2; ++r) {
    Loader loader(memory, none, shared(o, chunk(r, 2)));
    parts.push_back(stream(loader, 1));
  }
  expect_shares_make_the_whole(parts, chunks(2), expected_views);
}

// ---------------------------------------------------------------------------------------------
// Unusable files

// 21 files, batch 6: global batches of 6, 6, 6, 3. The share that holds the text file delivers its
// batch with a gap; the other share never opens it. The holder's next epoch leaves the file out;
// the other loader does too once told (the exchange a trainer makes between its processes).
TEST(LoaderShare, ABadFileLeavesAGapInItsShareAndIsExcludedNextEpoch) {
  FolderWithABadFile f(20);
  // A seed that puts the bad file in one of the full batches (its share then has other samples).
  std::uint64_t seed = 13;
  std::uint64_t where = 0;
  for (;; ++seed) {
    const auto order = epoch_order(21, {}, seed, 0, true);
    where = static_cast<std::uint64_t>(std::find(order.begin(), order.end(), f.bad) - order.begin());
    if (where < 18) break;
  }
  const std::uint64_t k = where / 6;
  const auto w = static_cast<std::uint32_t>(where % 6);
  const std::size_t holder = w < 3 ? 0 : 1;
  SCOPED_TRACE("seed " + std::to_string(seed) + ": the bad file is position " + std::to_string(w) + " of batch " +
               std::to_string(k));

  const auto pipeline = spec(kIdentity32);
  Loader whole(f.data, pipeline, options(6, 2, 2, seed));
  std::vector<std::unique_ptr<Loader>> loaders;
  for (std::size_t r = 0; r < 2; ++r) {
    LoaderOptions o = shared(options(6, 2, 2, seed), chunk(r, 2));
    // The other share is told about the bad file after epoch 0: no early start of epoch 1 before.
    if (r != holder) o.prefetch_next_epoch = false;
    loaders.push_back(std::make_unique<Loader>(f.data, pipeline, o));
  }
  // A share of one position, the bad file's: its batch k has nothing usable and is not delivered.
  const Share single = [w](std::size_t p) { return w < p ? std::pair<std::size_t, std::size_t>{w, w + 1} : std::pair<std::size_t, std::size_t>{0, 0}; };
  Loader lone(f.data, pipeline, shared(options(6, 2, 2, seed), single));

  const EpochRecord whole0 = stream(whole, 0);
  std::vector<EpochRecord> parts{stream(*loaders[0], 0), stream(*loaders[1], 0)};
  expect_shares_make_the_whole(parts, chunks(2), whole0);
  ASSERT_EQ(whole0.batches.size(), 4u);
  EXPECT_EQ(whole0.batches[k].ids.size(), 5u);
  EXPECT_EQ(std::count(whole0.batches[k].positions.begin(), whole0.batches[k].positions.end(), w), 0);

  // The holder's batch k: its share [0, 3) or [3, 6) without w.
  const auto held = std::find_if(parts[holder].batches.begin(), parts[holder].batches.end(),
                                 [&](const BatchRecord& b) { return b.index == k; });
  ASSERT_NE(held, parts[holder].batches.end()) << "the holder's batch with a gap must be delivered";
  std::vector<std::uint32_t> gap = holder == 0 ? range(0, 3) : range(3, 6);
  gap.erase(std::find(gap.begin(), gap.end(), w));
  EXPECT_EQ(held->positions, gap);
  EXPECT_EQ(held->batch_positions, 6u);
  EXPECT_EQ(parts[holder].batches.size(), 4u);
  EXPECT_EQ(parts[1 - holder].batches.size(), 4u);

  // Reported by the holder (and the lone share), never opened by the other.
  ASSERT_EQ(loaders[holder]->bad_files().count(), 1u);
  EXPECT_EQ(loaders[holder]->bad_files().entries().begin()->first, f.bad);
  EXPECT_EQ(loaders[holder]->bad_files().entries().begin()->second.first, f.bad_path.string());
  EXPECT_EQ(loaders[1 - holder]->bad_files().count(), 0u);

  const EpochRecord lone0 = stream(lone, 0);
  std::vector<std::uint64_t> lone_indices;
  for (std::uint64_t b = 0; b < 4; ++b)
    if (b != k && w < (b < 3 ? 6u : 3u)) lone_indices.push_back(b);
  EXPECT_EQ(lone0.indices(), lone_indices) << "batch " << k << " holds only the bad file: not delivered";
  EXPECT_EQ(lone.bad_files().count(), 1u);

  // Epoch 1: the holder's order leaves the file out; the other's does once told.
  EXPECT_EQ(loaders[holder]->epoch_positions(1), 20u);
  EXPECT_EQ(loaders[1 - holder]->epoch_positions(1), 21u) << "it has not seen the file";
  for (const auto& [index, entry] : loaders[holder]->bad_files().entries())
    loaders[1 - holder]->mark_unusable(index, entry.second);
  EXPECT_EQ(loaders[1 - holder]->epoch_positions(1), 20u);
  EXPECT_EQ(whole.epoch_positions(1), 20u);

  const EpochRecord whole1 = stream(whole, 1);
  parts = {stream(*loaders[0], 1), stream(*loaders[1], 1)};
  expect_shares_make_the_whole(parts, chunks(2), whole1);
  std::vector<bool> excluded(21, false);
  excluded[f.bad] = true;
  EXPECT_EQ(whole1.ids(), epoch_order(21, excluded, seed, 1, true));
  for (const auto& part : parts) {
    const auto ids = part.ids();
    EXPECT_EQ(std::count(ids.begin(), ids.end(), f.bad), 0);
    EXPECT_EQ(part.indices(), (std::vector<std::uint64_t>{0, 1, 2, 3}));
    EXPECT_EQ(part.batches.back().batch_positions, 2u) << "20 = 6 + 6 + 6 + 2";
  }
  EXPECT_EQ(loaders[holder]->bad_files().count(), 1u) << "reported once";
}

// ---------------------------------------------------------------------------------------------
// Resume

// A run resumed at global batch b gives the uninterrupted epoch's batches from b on, with the
// graph and inline; a resume at a batch whose share is empty starts at the next one.
TEST(LoaderShare, StartingAtABatchGivesTheRestOfTheEpoch) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 30);
  const auto pipeline = spec(kTrainSpec);
  for (const std::size_t r : {0u, 2u}) {  // of 3, batch 7: P = 7, 7, 7, 7, 2; share 0 of the 2 is empty
    Loader full_loader(data, pipeline, shared(options(7, 2, 2, 5), chunk(r, 3)));
    const EpochRecord full = stream(full_loader, 2);
    ASSERT_EQ(full.indices(), r == 0 ? (std::vector<std::uint64_t>{0, 1, 2, 3})
                                     : (std::vector<std::uint64_t>{0, 1, 2, 3, 4}));
    for (const bool inline_loading : {false, true}) {
      for (const std::uint64_t first : {1u, 3u, 4u, 5u, 9u}) {
        SCOPED_TRACE("share " + std::to_string(r) + (inline_loading ? ", inline" : ", graph") + ", from batch " +
                     std::to_string(first));
        LoaderOptions o = shared(options(7, 2, 2, 5), chunk(r, 3));
        o.inline_loading = inline_loading;
        Loader loader(data, pipeline, o);
        const EpochRecord rest = stream(loader, 2, first);
        EpochRecord expected;
        for (const auto& b : full.batches)
          if (b.index >= first) expected.batches.push_back(b);
        EXPECT_TRUE(same_batches(rest, expected));
        EXPECT_TRUE(same_batches(stream(loader, 3), stream(full_loader, 3))) << "and the next epoch is whole";
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Empty shares

// 27 samples, batch 8: P = 8, 8, 8, 3. A share empty when P < 4 skips the last batch; a share
// always empty streams nothing (and does not hang); a share outside [0, P] is a ConfigError.
TEST(LoaderShare, BatchesWithAnEmptyShareAreNotDelivered) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 27);
  const auto pipeline = spec(kTrainSpec);
  Loader whole(data, pipeline, options(8, 2, 2, 3));
  const Share middle = [](std::size_t p) {
    return p < 4 ? std::pair<std::size_t, std::size_t>{0, 0} : std::pair<std::size_t, std::size_t>{1, 3};
  };
  Loader loader(data, pipeline, shared(options(8, 2, 2, 3), middle));
  for (std::uint64_t epoch : {0u, 1u}) {
    SCOPED_TRACE("epoch " + std::to_string(epoch));
    const EpochRecord w = stream(whole, epoch);
    ASSERT_EQ(w.batches.size(), 4u);
    const EpochRecord got = stream(loader, epoch);
    EXPECT_EQ(got.indices(), (std::vector<std::uint64_t>{0, 1, 2}));
    const auto order = epoch_order(27, {}, 3, epoch, true);
    for (const auto& b : got.batches) {
      EXPECT_EQ(b.positions, (std::vector<std::uint32_t>{1, 2}));
      EXPECT_EQ(b.batch_positions, 8u);
      EXPECT_EQ(b.ids, (std::vector<std::uint64_t>{order[b.index * 8 + 1], order[b.index * 8 + 2]}));
      const BatchRecord& wb = w.batches[b.index];
      EXPECT_EQ(std::memcmp(b.data.data(), wb.data.data() + wb.row_floats, b.data.size() * sizeof(float)), 0)
          << "batch " << b.index << ": rows 1 and 2 of the unshared batch";
    }
    EXPECT_EQ(loader.epoch_positions(epoch), 27u) << "the global order, whatever the share";
  }

  const Share nothing = [](std::size_t) { return std::pair<std::size_t, std::size_t>{0, 0}; };
  Loader idle(data, pipeline, shared(options(8, 2, 2, 3), nothing));
  for (std::uint64_t epoch : {0u, 1u}) EXPECT_TRUE(stream(idle, epoch).batches.empty());
  EXPECT_EQ(idle.in_flight_high_water(), 0u) << "an empty share loads nothing";

  const Share too_far = [](std::size_t p) { return std::pair<std::size_t, std::size_t>{0, p + 1}; };
  const Share reversed = [](std::size_t p) { return std::pair<std::size_t, std::size_t>{p, p - 1}; };
  for (const Share& bad : {too_far, reversed}) {
    Loader wrong(data, pipeline, shared(options(8), bad));
    EXPECT_THROW(wrong.start_epoch(0), ConfigError);
  }
}

// ---------------------------------------------------------------------------------------------
// epoch_positions

TEST(LoaderShare, EpochPositionsCountsWhatTheUnsharedLoaderDelivers) {
  TempDir dir;
  const Dataset data = noise_folder(dir, 37);
  const auto pipeline = spec(kTrainSpec);
  auto delivered = [](const EpochRecord& rec) {
    std::size_t positions = 0;
    for (const auto& b : rec.batches) positions += b.ids.size();
    return positions;
  };
  for (const char* variant : {"plain", "drop_last", "shard 0/2", "shard 1/2", "no shuffle"}) {
    SCOPED_TRACE(variant);
    LoaderOptions o = options(8, 2, 2, 11);
    const std::string v = variant;
    if (v == "drop_last") o.drop_last = true;
    if (v == "shard 0/2") o.shard = {0, 2};
    if (v == "shard 1/2") o.shard = {1, 2};
    if (v == "no shuffle") o.shuffle = false;
    Loader loader(data, pipeline, o);
    const std::size_t before = loader.epoch_positions(0);
    const EpochRecord first = stream(loader, 0);
    EXPECT_EQ(before, delivered(first));
    EXPECT_EQ(loader.epoch_positions(0), before) << "the streamed epoch: its run's order";
    EXPECT_EQ(first.batches.size(), (before + 7) / 8);
    // Epoch 1 has started early (prefetch_next_epoch): its run answers.
    const std::size_t next = loader.epoch_positions(1);
    EXPECT_EQ(next, delivered(stream(loader, 1)));
    std::size_t expected = v == "drop_last" ? 32u : v.rfind("shard", 0) == 0 ? epoch_order(37, {}, 11, 0, true, o.shard).size() : 37u;
    EXPECT_EQ(before, expected);
  }
  EXPECT_EQ(epoch_order(37, {}, 11, 0, true, {0, 2}).size() + epoch_order(37, {}, 11, 0, true, {1, 2}).size(), 37u);

  // A bad file: epoch 0's positions count it (its batch has a gap), later epochs' do not.
  FolderWithABadFile f(20);
  Loader loader(f.data, spec(kIdentity32), options(6, 2, 2, 13));
  EXPECT_EQ(loader.epoch_positions(0), 21u);
  const EpochRecord first = stream(loader, 0);
  EXPECT_EQ(delivered(first), 20u);
  std::size_t covered = 0;
  for (const auto& b : first.batches) covered += b.batch_positions;
  EXPECT_EQ(covered, 21u) << "batch_positions counts the unusable sample's position";
  EXPECT_EQ(loader.epoch_positions(0), 21u);
  EXPECT_EQ(loader.epoch_positions(1), 20u);
  EXPECT_EQ(loader.epoch_positions(7), 20u) << "an epoch not started: the exclusions known now";
  EXPECT_EQ(delivered(stream(loader, 1)), 20u);
}

}  // namespace
}  // namespace augflow::pipeline
