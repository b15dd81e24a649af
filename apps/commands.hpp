// The subcommands of the augflow tool. Each lives in its own file and only registers its
// options and callback here; the work is done by the library.
#pragma once

#include <CLI/CLI.hpp>

namespace augflow::apps {

void add_preview_command(CLI::App& app);
void add_bench_command(CLI::App& app);
/// `bench loader`, a subcommand of `bench` (apps/bench_loader.cpp).
void add_bench_loader_command(CLI::App& bench);

/// Keeps OpenCV from starting its own threads: augflow's parallelism comes from TBB over
/// samples, and OpenCV's nested parallel_for_ would oversubscribe the cores (PITFALLS.md).
void single_threaded_opencv();

/// The help text of the augmentation spec language, for --help of every subcommand taking --aug.
const std::string& aug_spec_help();

}  // namespace augflow::apps
