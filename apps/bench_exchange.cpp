// `augflow bench exchange`: the latency and bandwidth of the exchange data-parallel training
// uses (MPI_Allgatherv and MPI_Alltoallv through the job's communicator), for the scaling model
// of bench/scaling.sh. Run under mpirun; rank 0 prints.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "common/communicator.hpp"
#include "common/error.hpp"

namespace augflow::apps {
namespace {

struct BenchExchangeOptions {
  int repeats = 20;
  std::size_t large_mb = 16;
  std::string json;
};

/// Median seconds of one all-gather of `bytes` per process followed by an all-to-all of the
/// same size (the two collectives of a gradient exchange).
double exchange_seconds(Communicator& comm, std::size_t bytes, int repeats) {
  const std::size_t ranks = static_cast<std::size_t>(comm.size());
  const std::size_t part = std::max<std::size_t>(1, bytes / ranks);
  std::vector<char> mine(bytes, 1), all(bytes * ranks), send(part * ranks, 2), recv(part * ranks);
  const std::vector<std::size_t> gather_bytes(ranks, bytes), slice_bytes(ranks, part);
  std::vector<double> times;
  for (int i = 0; i < repeats + 2; ++i) {
    comm.all_gather({});  // start together
    const auto start = std::chrono::steady_clock::now();
    comm.all_gather_into(mine.data(), gather_bytes, all.data());
    comm.all_to_all(send.data(), slice_bytes, recv.data(), slice_bytes);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (i >= 2) times.push_back(seconds);  // two warm-up rounds
  }
  // Every process's median, the slowest counts (a collective ends when all are done).
  double slowest = 0;
  for (const auto& text : comm.all_gather(std::to_string(median(times)))) slowest = std::max(slowest, std::stod(text));
  return slowest;
}

void run_bench_exchange(const BenchExchangeOptions& o) {
  Communicator& comm = world_communicator();
  if (comm.size() < 2)
    throw ConfigError("augflow bench exchange measures messages between processes: start it with mpirun -np 2 (or more)");
  if (o.repeats < 1 || o.large_mb < 1) throw ConfigError("--repeats and --large-mb must be at least 1");
  const double small = exchange_seconds(comm, 8, o.repeats);
  const std::size_t large_bytes = o.large_mb << 20;
  const double large = exchange_seconds(comm, large_bytes, std::max(3, o.repeats / 4));
  // Bytes each process receives in the large round: the others' gathered parts and slices.
  const double received = static_cast<double>(large_bytes) * (comm.size() - 1) * (1.0 + 1.0 / comm.size());
  const double latency = small / 2.0;  // per collective
  const double bandwidth = received / std::max(1e-9, large - small);
  if (!comm.root()) return;
  std::printf("augflow bench exchange: %d processes\n", comm.size());
  std::printf("latency     %.1f us per collective (all-gather + all-to-all of 8 bytes: %.1f us)\n", latency * 1e6,
              small * 1e6);
  std::printf("bandwidth   %.2f GB/s received per process (%zu MB per process: %.2f ms)\n", bandwidth / 1e9,
              o.large_mb, large * 1e3);
  if (!o.json.empty())
    write_json_report(o.json, {{"processes", comm.size()},
                               {"latency_seconds", latency},
                               {"bandwidth_bytes_per_second", bandwidth},
                               {"small_exchange_seconds", small},
                               {"large_exchange_seconds", large},
                               {"large_bytes", large_bytes}});
}

}  // namespace

void add_bench_exchange_command(CLI::App& bench) {
  auto o = std::make_shared<BenchExchangeOptions>();
  auto* cmd = bench.add_subcommand(
      "exchange",
      "Latency and bandwidth of the exchange between the processes of an mpirun job (what data-parallel\n"
      "training sends every step: an all-gather and an all-to-all), medians of --repeats rounds.\n"
      "Example: mpirun -np 2 augflow bench exchange --json exchange.json");
  cmd->add_option("--repeats", o->repeats, "timed rounds per message size")->capture_default_str();
  cmd->add_option("--large-mb", o->large_mb, "MB each process sends in the bandwidth rounds")->capture_default_str();
  cmd->add_option("--json", o->json,
                  "write a JSON report: processes, latency_seconds, bandwidth_bytes_per_second,\n"
                  "small_exchange_seconds, large_exchange_seconds, large_bytes");
  cmd->callback([o] { run_bench_exchange(*o); });
}

}  // namespace augflow::apps
