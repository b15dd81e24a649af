// Handing out the trials of a search to the processes of a job (and to each process's threads).
//
// Contract:
// - Rank 0 coordinates: run() hands tasks out in task order to whichever slot frees up first,
//   its own `slots` threads and those of the other processes (each asks for work once per free
//   slot). A trial runs whole in one process, on one of its threads, with the settings it would
//   have in a one-process search: its result does not depend on where it ran (search.hpp).
// - `finished` is called on rank 0's calling thread, once per finished trial, in the order the
//   trials finish; the caller orders what must not depend on that order.
// - The other ranks call serve(): it runs what rank 0 sends until rank 0 calls finish().
// - All MPI calls happen on the calling (main) thread; trials run on threads of their own.
// - An error in a trial (IoError, DataError: the data or the folder) stops the handing out; the
//   error is rethrown once the running trials end. On another rank it ends that process, which
//   ends the job (apps/main.cpp aborts it): no process waits forever for a dead one.
//
// API: internal to augflow::pipeline; not installed.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

#include "common/communicator.hpp"
#include "pipeline/search.hpp"

namespace augflow::pipeline {

/// One trial to run.
struct TrialTask {
  int stage = 1;
  int index = 0;
  model::Assignment params;
};

/// Runs one trial on a worker thread; nothing when `stop` interrupted it.
using TrialRunner = std::function<std::optional<TrialResult>(const TrialTask&)>;

class TrialDispatcher {
 public:
  /// `slots`: trials at once in this process.
  TrialDispatcher(Communicator& comm, int slots, TrialRunner run, const std::atomic<bool>* stop);

  /// Rank 0: runs every task; returns when all have finished, or when `stop` was raised and the
  /// running ones ended (then false).
  bool run(const std::vector<TrialTask>& tasks, const std::function<void(std::size_t, TrialResult&&)>& finished);
  /// Rank 0, once, at the end of the search (also after an interruption): releases the others.
  void finish();
  /// The other ranks: runs the trials rank 0 sends until it calls finish(). Returns false when
  /// `stop` interrupted a trial here.
  bool serve();

 private:
  Communicator& comm_;
  int slots_;
  TrialRunner run_;
  const std::atomic<bool>* stop_;
  std::vector<int> idle_;  // rank 0: one entry per free slot of another process, oldest first
};

/// The wire form of a task and of a result (JSON text; doubles round-trip exactly).
std::string task_to_wire(std::size_t id, const TrialTask& task);
TrialTask task_from_wire(const std::string& wire, std::size_t& id);
std::string result_to_wire(std::size_t id, const std::optional<TrialResult>& result);
std::optional<TrialResult> result_from_wire(const std::string& wire, std::size_t& id);

}  // namespace augflow::pipeline
