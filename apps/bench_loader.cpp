// augflow bench loader: the streaming loader (flow graph) end to end, as training consumes it.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <thread>

#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "pipeline/loader.hpp"

namespace augflow::apps {
namespace {
using Clock = std::chrono::steady_clock;

struct BenchLoaderOptions {
  std::string data;
  std::string aug = kDefaultAugSpec;
  pipeline::LoaderOptions loader;
  int epochs = 3;
  double consumer_ms = 0;
  std::string json;
};

double peak_rss_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // Linux reports kilobytes
}

void run_bench_loader(BenchLoaderOptions o) {
  if (o.epochs < 1 || o.epochs > 1000) throw ConfigError("--epochs must be in [1, 1000]");
  if (o.consumer_ms < 0 || o.consumer_ms > 60000) throw ConfigError("--consumer-ms must be in [0, 60000]");
  single_threaded_opencv();
  auto warn = [](const std::string& message) { std::cerr << message << "\n"; };
  auto data = pipeline::open_dataset(o.data, warn);
  auto spec = std::make_shared<const augment::Pipeline>(augment::parse_pipeline_any(o.aug));
  const std::size_t listed = data.size();
  o.loader.last_epoch = static_cast<std::uint64_t>(o.epochs);
  pipeline::Loader loader(std::move(data), spec, o.loader, warn);
  const auto shape = loader.sample_shape();
  std::cout << "augflow bench loader: " << listed << " samples in " << loader.dataset().class_names.size()
            << " classes from " << o.data << "\nspec: " << spec->print() << "\nbatch " << o.loader.batch_size
            << " of " << shape.channels << "x" << shape.height << "x" << shape.width << ", " << o.loader.threads
            << " threads, " << loader.tokens() << " tokens"
            << (o.loader.cache_mb ? ", cache " + std::to_string(o.loader.cache_mb) + " MB" : std::string(", no cache"))
            << (o.consumer_ms > 0 ? ", consumer step " + std::to_string(o.consumer_ms) + " ms" : std::string())
            << "\n";

  std::vector<double> rates;
  double timed_seconds = 0, timed_wait = 0;
  std::size_t batches = 0;
  // Epoch 0 warms up (and fills the cache); epochs 1..E are timed.
  for (int epoch = 0; epoch <= o.epochs; ++epoch) {
    const double wait_before = loader.wait_seconds();
    const auto start = Clock::now();
    loader.start_epoch(epoch);
    std::size_t images = 0;
    while (auto batch = loader.next()) {
      images += batch->size();
      ++batches;
      if (o.consumer_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(o.consumer_ms));
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    if (epoch == 0) continue;
    rates.push_back(images / seconds);
    timed_seconds += seconds;
    timed_wait += loader.wait_seconds() - wait_before;
    std::printf("epoch %d: %zu images in %.2f s = %.1f images/s\n", epoch, images, seconds, images / seconds);
  }
  const auto& bad = loader.bad_files();
  if (bad.count()) std::cerr << bad.summary() << "\n";
  const double rate = median(rates);
  const double wait_fraction = timed_seconds > 0 ? timed_wait / timed_seconds : 0;
  std::printf("loader            %9.1f images/s (median of %d epochs)\n", rate, o.epochs);
  std::printf("consumer waited   %9.1f %% of the time\n", 100 * wait_fraction);
  std::printf("peak RSS          %9.1f MB\n", peak_rss_mb());

  if (!o.json.empty()) {
    const nlohmann::json report = {
        {"dataset_images", listed - bad.count()},
        {"skipped_files", bad.count()},
        {"images_per_second", rate},
        {"epoch_images_per_second", rates},
        {"consumer_wait_fraction", wait_fraction},
        {"peak_rss_mb", peak_rss_mb()},
        {"batch", o.loader.batch_size},
        {"threads", o.loader.threads},
        {"tokens", loader.tokens()},
        {"in_flight_high_water", loader.in_flight_high_water()},
        {"cache_mb", o.loader.cache_mb},
        {"cache_used_mb", loader.cache_bytes() / 1048576.0},
        {"consumer_ms", o.consumer_ms},
        {"spec", spec->print()},
    };
    write_json_report(o.json, report);
  }
}

}  // namespace

void add_bench_loader_command(CLI::App& bench) {
  auto o = std::make_shared<BenchLoaderOptions>();
  auto* cmd = bench.add_subcommand(
      "loader",
      "Stream a data set through the loader's flow graph (read, decode, augment, batch) as\n"
      "training would, for one warm-up epoch and --epochs timed ones; report images/second,\n"
      "the fraction of time the consumer waited for a batch, and peak memory.");
  cmd->add_option("--data", o->data,
                  "an image folder (ImageFolder layout: one sub-folder per class), a list file "
                  "(path,label lines), fashion-mnist or fashion-mnist:test")
      ->required();
  cmd->add_option("--aug", o->aug, "augmentation spec (must give a fixed size: end with a crop)")->capture_default_str();
  cmd->add_option("--batch", o->loader.batch_size, "samples per batch")->capture_default_str();
  cmd->add_option("--threads", o->loader.threads, "loader threads (decode and augment)")->capture_default_str();
  cmd->add_option("--prefetch", o->loader.prefetch_batches,
                  "batches in flight ahead of the consumer (tokens = prefetch x batch)")->capture_default_str();
  cmd->add_option("--cache", o->loader.cache_mb,
                  "keep decoded images in memory up to this many MB (augmentation still runs every epoch)")
      ->capture_default_str();
  cmd->add_option("--epochs", o->epochs, "timed epochs after the warm-up epoch")->capture_default_str();
  cmd->add_option("--consumer-ms", o->consumer_ms,
                  "the consumer sleeps this long per batch, standing in for a training step")->capture_default_str();
  cmd->add_option("--seed", o->loader.seed, "run seed (order and augmentation)")->capture_default_str();
  cmd->add_option("--max-pixels", o->loader.max_pixels, "reject images above this many pixels, from the header")
      ->capture_default_str();
  cmd->add_flag("--strict", o->loader.strict, "an unusable file is an error instead of a reported skip");
  cmd->add_option("--json", o->json,
                  "write a JSON report: dataset_images, skipped_files, images_per_second,\n"
                  "consumer_wait_fraction, peak_rss_mb, tokens, in_flight_high_water, ...");
  cmd->footer(aug_spec_help());
  cmd->callback([o] { run_bench_loader(*o); });
}

}  // namespace augflow::apps
