// Data-parallel training over the processes of a job (mpirun): who holds which samples of every
// batch, and the exchanges that make the result that of one process.
//
// Every global batch is cut into the chunks of model::ChunkLayout::uniform(P, K) (P the batch's
// positions in the epoch's order: --batch, or fewer for the epoch's last; K the run's --chunks). Process r of N holds
// the consecutive chunks chunks_of(r, N, count): it loads only their samples (the loader's
// batch_share), runs only their forward and backward, and the layers add the chunks' partials
// of all processes in chunk order (model/parallel.hpp). Samples of unusable files leave gaps
// that every process learns of at the start of the step (agree()), so the chunk layout is the
// same as one process's, whatever N. One process is the same code with a trivial exchange.
//
// Every call here is a collective: each process makes the same calls in the same order, from
// the main thread.
//
// API: internal to augflow::pipeline; not installed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "common/communicator.hpp"
#include "model/parallel.hpp"
#include "pipeline/loader.hpp"

namespace augflow::pipeline {

/// The chunks [first, last) of a batch of `chunks` chunks that process `rank` of `ranks` holds.
std::pair<int, int> chunks_of(int rank, int ranks, int chunks);

/// The largest number of processes a data-parallel run may have: each holds at least one of the
/// (at most `chunks`) chunks of a full batch.
int max_processes(int batch, int chunks);

/// A partial of each chunk, moved through the communicator (MPI_Allgatherv).
class CommunicatorExchange final : public model::ChunkExchange {
 public:
  explicit CommunicatorExchange(Communicator& comm) : comm_(comm) {}
  /// The batch whose chunks the next gathers carry.
  void set_chunks(int chunks) { chunks_ = chunks; }
  void gather(const float* mine, std::size_t width, float* all) override;
  void gather(const double* mine, std::size_t width, double* all) override;
  /// Process r's slice of every process's partial sums arrives with one all-to-all, is combined
  /// there, and the slices are shared with one all-gather.
  void reduce(const float* mine, std::size_t width, const std::vector<std::size_t>& nodes_per_rank,
              const std::function<void(const float* nodes, std::size_t slice, float* out)>& combine,
              float* sums) override;

 private:
  void gather_bytes(const void* mine, std::size_t bytes_per_chunk, void* all);
  Communicator& comm_;
  int chunks_ = 0;
  std::vector<float> send_, recv_, slice_;  // sum_chunks's buffers, kept from step to step
};

/// What the processes agreed on at the start of a step.
struct StepAgreement {
  bool stop = false;       ///< some process was asked to stop (Ctrl-C): every process stops here
  double lr = 0;           ///< rank 0's learning rate (a time budget reads rank 0's clock)
  bool last_step = false;  ///< rank 0's budget ends with this step
  int samples = 0;         ///< usable samples of the whole batch (0: the step is skipped)
};

class DataParallel {
 public:
  /// `chunks`: the run's chunks per batch (TrainConfig::chunks).
  DataParallel(Communicator& comm, int chunks);

  Communicator& comm() { return comm_; }
  int rank() const { return comm_.rank(); }
  int size() const { return comm_.size(); }

  /// The positions [begin, end) of a batch of `positions` that this process loads.
  std::pair<std::size_t, std::size_t> share(std::size_t positions) const;
  /// share() as a LoaderOptions::batch_share (empty for one process: the whole batch).
  std::function<std::pair<std::size_t, std::size_t>(std::size_t)> loader_share() const;

  /// This process's part of a global batch of `positions` positions: the chunks it holds and
  /// their bounds in `local` (null: none of its samples arrived). The sample counts of the
  /// other processes' chunks come with agree() (training) and are not needed for evaluation.
  model::BatchPartition partition(const Batch* local, std::size_t positions);

  /// The start of a training step: every process's chunk sample counts into `partition`,
  /// whether anyone must stop, and rank 0's learning rate and budget end.
  StepAgreement agree(model::BatchPartition& partition, bool stop, double lr, bool last_step);

  /// The batch's loss sum and top-1 count from each local sample's loss and correctness, added
  /// per chunk and then in chunk order over all processes' chunks.
  std::pair<double, std::size_t> batch_sums(const model::BatchPartition& partition,
                                            const std::vector<double>& sample_losses,
                                            const std::vector<char>& sample_correct);

  /// Unusable files found by any process since the last call become unusable on every process,
  /// so that the next epoch's order (which leaves them out) is the same everywhere.
  void share_unusable(Loader& loader);

  /// Rank 0's `value`, on every process.
  std::string broadcast(const std::string& value) { return comm_.broadcast(value); }

  /// Seconds spent in communication so far.
  double communication_seconds() const { return comm_.seconds(); }

  /// Per chunk of every evaluated batch: (batch, chunk, loss sum, correct, samples), gathered from
  /// all processes and summed in (batch, chunk) order. Returns (loss sum, correct, samples).
  struct ChunkRecord {
    std::uint64_t batch = 0;
    std::uint64_t chunk = 0;  // 64 bits: the record has no padding bytes (it is sent as bytes)
    double loss = 0;
    double correct = 0;
    double samples = 0;
  };
  std::tuple<double, std::size_t, std::size_t> sum_records(const std::vector<ChunkRecord>& mine);

 private:
  Communicator& comm_;
  int chunks_;
  CommunicatorExchange exchange_;
};

}  // namespace augflow::pipeline
