// Helpers the loader's tests share (tests/test_loader.cpp, tests/test_loader_share.cpp): a
// watchdog for streaming loops, the specs and options they use, generated data sets.
#pragma once

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "augment/pipeline.hpp"
#include "augment/spec.hpp"
#include "pipeline/dataset.hpp"
#include "pipeline/loader.hpp"
#include "tests/fixtures.hpp"

namespace augflow::pipeline::loader_test {

/// Runs `f` on its own thread and returns its result (or rethrows its exception). If it has not
/// finished after 60 s the loader hangs: the test fails and the process aborts, since the hung
/// thread cannot be cancelled.
template <class F>
auto within_time(const std::string& what, F&& f) {
  auto future = std::async(std::launch::async, std::forward<F>(f));
  if (future.wait_for(std::chrono::seconds(60)) == std::future_status::timeout) {
    ADD_FAILURE() << what << " did not finish within 60 s: the loader hangs";
    std::fprintf(stderr, "FATAL: %s did not finish within 60 s (hang); aborting\n", what.c_str());
    std::fflush(nullptr);
    std::abort();
  }
  return future.get();
}

inline std::shared_ptr<const augment::Pipeline> spec(const std::string& text) {
  return std::make_shared<const augment::Pipeline>(augment::parse_pipeline(text));
}

/// A random training spec with a fixed 32x32 output: flips, scale crop, colour, erasing.
inline constexpr const char* kTrainSpec =
    "hflip | scale_crop(min=36,max=48,size=32) | jitter(0.4,0.4,0.4) | erase(p=0.5) | normalize(imagenet)";
/// The identity on 32x32 images (short side to 32, a 32x32 crop): rows equal the decoded file.
inline constexpr const char* kIdentity32 = "scale_crop(min=32,max=32,size=32)";

inline LoaderOptions options(int batch, int threads = 2, int prefetch = 2, std::uint64_t seed = 7) {
  LoaderOptions o;
  o.batch_size = batch;
  o.threads = threads;
  o.prefetch_batches = prefetch;
  o.seed = seed;
  return o;
}

/// `count` noise images of sizes lo..hi in `classes` sub-folders of dir/folder, opened.
inline Dataset noise_folder(const test::TempDir& dir, int count, int classes = 3, int lo = 40, int hi = 120,
                            const std::string& ext = ".jpg", const std::string& folder = "data") {
  const int span = hi - lo + 1;
  for (int i = 0; i < count; ++i) {
    const int w = lo + (i * 37) % span;
    const int h = lo + (i * 53 + 11) % span;
    char name[64];
    std::snprintf(name, sizeof name, "/c%d/img%03d", i % classes, i);
    dir.write(folder + name + ext, test::encode(test::noise_image(w, h, 3, 1000 + i), ext));
  }
  const Dataset d = open_image_folder(dir.path() / folder);
  EXPECT_EQ(d.size(), static_cast<std::size_t>(count));
  return d;
}

/// An in-memory (IDX-style) grey data set of `count` rows x cols images, labels i*7 % 5.
inline Dataset memory_set(std::size_t count, int rows = 28, int cols = 28) {
  Dataset d;
  d.name = "memory";
  d.channels = 1;
  d.rows = rows;
  d.cols = cols;
  for (int c = 0; c < 5; ++c) d.class_names.push_back(std::to_string(c));
  auto pixels = std::make_shared<std::vector<std::uint8_t>>(count * rows * cols);
  std::uint32_t state = 12345;
  for (auto& p : *pixels) {
    state = state * 1664525u + 1013904223u;
    p = static_cast<std::uint8_t>(state >> 24);
  }
  d.pixels = pixels;
  for (std::size_t i = 0; i < count; ++i) {
    d.labels.push_back(static_cast<int>(i * 7 % 5));
    d.memory_index.push_back(static_cast<std::uint32_t>(i));
  }
  return d;
}

}  // namespace augflow::pipeline::loader_test
