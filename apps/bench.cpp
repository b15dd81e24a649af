// augflow bench augment: images/second for decode only, augment only (decoded images cached)
// and decode+augment, median of several passes, on N threads; optionally one single-thread
// rate per transform.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include "apps/commands.hpp"
#include "augment/decode.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "pipeline/image_files.hpp"

namespace augflow::apps {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct BenchAugmentOptions {
  std::string data;
  std::string aug = kDefaultAugSpec;
  int threads = 2;
  int passes = 5;
  int channels = 3;
  std::uint64_t seed = 0;
  bool per_transform = false;
  std::string json;
};

/// Runs body(i) for i in [0, n) on the arena; returns images per second.
template <class Body>
double timed_pass(tbb::task_arena& arena, std::size_t n, Body body) {
  const auto start = Clock::now();
  arena.execute([&] {
    tbb::parallel_for(tbb::blocked_range<std::size_t>(0, n, 1), [&](const tbb::blocked_range<std::size_t>& r) {
      for (std::size_t i = r.begin(); i != r.end(); ++i) body(i);
    });
  });
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return n / seconds;
}

/// One warm-up pass, then `passes` timed ones; returns all rates.
template <class Body>
std::vector<double> measure(tbb::task_arena& arena, std::size_t n, int passes, Body body) {
  timed_pass(arena, n, body);
  std::vector<double> rates;
  for (int p = 0; p < passes; ++p) rates.push_back(timed_pass(arena, n, body));
  return rates;
}

// Albumentations' published single-thread CPU figures (images/s), for the comparison in docs/benchmarks.md.
const std::map<std::string, double> kAlbumentationsRates{
    {"resized_crop", 4300}, {"jitter", 1100}, {"affine", 1400}, {"hflip", 12000}};

void run_bench_augment(const BenchAugmentOptions& o) {
  single_threaded_opencv();
  if (o.threads < 1 || o.threads > 256) throw ConfigError("--threads must be in [1, 256]");
  if (o.passes < 1 || o.passes > 100) throw ConfigError("--passes must be in [1, 100]");
  if (o.channels != 1 && o.channels != 3) throw ConfigError("--channels must be 1 or 3");
  const auto pipeline = augment::parse_pipeline_any(o.aug);
  const auto listed = pipeline::list_image_files(o.data);

  // First, find what decodes: every unusable file is reported once with its reason and left out.
  std::vector<fs::path> files;
  std::vector<cv::Mat> decoded;
  std::size_t skipped = 0;
  for (const auto& path : listed) {
    try {
      decoded.push_back(augment::decode_file(path, {o.channels}).image);
      files.push_back(path);
    } catch (const DataError& e) {
      std::cerr << "skipped " << e.what() << "\n";
      ++skipped;
    }
  }
  if (files.empty()) throw DataError(o.data, "no decodable images (" + std::to_string(skipped) + " skipped)");
  const std::size_t n = files.size();
  // One output buffer per worker thread, as a batch slot would be. Sized per image: a spec
  // without a crop keeps each image's own size.
  tbb::enumerable_thread_specific<std::vector<float>> buffers;
  auto slot = [&](const cv::Mat& image) {
    auto& buffer = buffers.local();
    buffer.resize(image.total() * image.channels());
    return buffer.data();
  };

  tbb::task_arena arena(o.threads);
  std::cout << "augflow bench augment: " << n << " images (" << skipped << " skipped) from " << o.data
            << ", " << o.threads << " threads, " << o.passes << " passes\nspec: " << pipeline.print() << "\n";

  const auto decode_rates = measure(arena, n, o.passes, [&](std::size_t i) {
    const auto image = augment::decode_file(files[i], {o.channels});
    (void)image;
  });
  std::uint64_t epoch = 0;
  const auto augment_rates = measure(arena, n, o.passes, [&](std::size_t i) {
    const auto& image = decoded[i];
    const auto plan = pipeline.plan({image.cols, image.rows, o.channels}, {o.seed, epoch, i});
    const cv::Mat out = pipeline.apply(image, plan);
    pipeline.normalize().to_chw(out, slot(out));
  });
  const auto full_rates = measure(arena, n, o.passes, [&](std::size_t i) {
    const auto bytes = augment::read_file(files[i]);
    const auto sample = pipeline.run(bytes, {o.seed, epoch, i}, o.channels);
    pipeline.normalize().to_chw(sample.image, slot(sample.image));
  });

  nlohmann::json report = {
      {"images", n},
      {"skipped_files", skipped},
      {"threads", o.threads},
      {"passes", o.passes},
      {"spec", pipeline.print()},
      {"decode_images_per_second", median(decode_rates)},
      {"augment_images_per_second", median(augment_rates)},
      {"decode_augment_images_per_second", median(full_rates)},
      {"decode_augment_passes", full_rates},
  };
  std::printf("decode only        %9.1f images/s\n", median(decode_rates));
  std::printf("augment only       %9.1f images/s (decoded images cached)\n", median(augment_rates));
  std::printf("decode + augment   %9.1f images/s\n", median(full_rates));

  if (o.per_transform) {
    tbb::task_arena single(1);
    nlohmann::json rates = nlohmann::json::object();
    std::printf("per transform, 1 thread, on the decoded images (Albumentations' published figure):\n");
    for (std::size_t t = 0; t < pipeline.transforms().size(); ++t) {
      const auto& transform = *pipeline.transforms()[t];
      const auto r = median(measure(single, n, o.passes, [&](std::size_t i) {
        const auto& image = decoded[i];
        augflow::Rng rng({o.seed, 0, i}, t);
        const auto params = transform.sample({image.cols, image.rows, o.channels}, rng);
        const auto result = transform.apply(image, params);
        (void)result;
      }));
      rates[transform.name()] = r;
      const auto ref = kAlbumentationsRates.find(transform.name());
      std::printf("  %-14s %9.1f images/s", transform.name().c_str(), r);
      if (ref != kAlbumentationsRates.end()) std::printf("   (Albumentations: %.0f)", ref->second);
      std::printf("\n");
    }
    const auto r = median(measure(single, n, o.passes, [&](std::size_t i) {
      pipeline.normalize().to_chw(decoded[i], slot(decoded[i]));
    }));
    rates["normalize"] = r;
    std::printf("  %-14s %9.1f images/s\n", "normalize", r);
    report["per_transform"] = rates;
  }
  if (!o.json.empty()) {
    write_json_report(o.json, report);
  }
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Measure augflow's speed (see also bench/compare_*.sh for the peers).");
  bench->require_subcommand(1);
  auto o = std::make_shared<BenchAugmentOptions>();
  auto* cmd = bench->add_subcommand(
      "augment",
      "Images/second for decode only, augment only (decoded images cached in memory) and\n"
      "decode+augment (the training path: only the crop's region is decoded), median of --passes\n"
      "timed passes after one warm-up.");
  cmd->add_option("--data", o->data, "an image folder (searched recursively) or one image")->required();
  cmd->add_option("--aug", o->aug, "augmentation spec")->capture_default_str();
  cmd->add_option("--threads", o->threads, "worker threads")->capture_default_str();
  cmd->add_option("--passes", o->passes, "timed passes over the data (median is reported)")->capture_default_str();
  cmd->add_option("--channels", o->channels, "decode to 1 or 3 channels")->capture_default_str();
  cmd->add_option("--seed", o->seed, "run seed")->capture_default_str();
  cmd->add_flag("--per-transform", o->per_transform, "also time each transform alone on one thread");
  cmd->add_option("--json", o->json,
                  "write a JSON report: decode_images_per_second, augment_images_per_second,\n"
                  "decode_augment_images_per_second, images, skipped_files, per_transform");
  cmd->footer(aug_spec_help());
  cmd->callback([o] { run_bench_augment(*o); });
  add_bench_loader_command(*bench);
  add_bench_train_command(*bench);
  add_bench_exchange_command(*bench);
}

}  // namespace augflow::apps
