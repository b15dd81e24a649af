// The subcommands of the augflow tool. Each lives in its own file and only registers its
// options and callback here; the work is done by the library.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json_fwd.hpp>

namespace augflow {
class Communicator;
}
namespace augflow::pipeline {
struct TestTimeOptions;
}

namespace augflow::apps {

void add_preview_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_predict_command(CLI::App& app);
void add_search_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_export_command(CLI::App& app);
/// `bench loader`, a subcommand of `bench` (apps/bench_loader.cpp).
void add_bench_loader_command(CLI::App& bench);
/// `bench train` (apps/bench_train.cpp).
void add_bench_train_command(CLI::App& bench);
/// `bench exchange` (apps/bench_exchange.cpp): runs under mpirun.
void add_bench_exchange_command(CLI::App& bench);

/// Keeps OpenCV from starting its own threads: augflow's parallelism comes from TBB over
/// samples, and OpenCV's nested parallel_for_ would oversubscribe the cores (PITFALLS.md).
void single_threaded_opencv();

/// The processes of this job (apps/main.cpp): one unless started by mpirun.
Communicator& world_communicator();

/// Registers the options eval and predict share, with the same help: --model, --views,
/// --scales (its text goes to `scales`; see parse_scales), --resize, --crop, --average, --batch
/// and --threads. `options` must outlive the parse (the command's shared state).
void add_test_time_options(CLI::App& cmd, pipeline::TestTimeOptions& options, std::string& scales);

/// --scales text ("224,256,384") as pixel sizes; ConfigError with an example when malformed.
std::vector<int> parse_scales(const std::string& text);

/// The ResNet-style default of every --aug option (the lecture's scale augmentation).
inline constexpr const char* kDefaultAugSpec =
    "hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)";

/// Writes a --json report (one object); throws IoError naming the file when it cannot.
void write_json_report(const std::string& path, const nlohmann::json& report);

/// Median of a non-empty sample (benchmarks quote medians: the machines are noisy).
double median(std::vector<double> values);

/// The help text of the augmentation spec language, for --help of every subcommand taking --aug.
const std::string& aug_spec_help();

}  // namespace augflow::apps
