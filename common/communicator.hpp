// The processes of one augflow job and the messages between them (an existing engine, Open MPI,
// underneath; no sockets of our own).
//
// Contract:
// - A Communicator knows its rank in [0, size()) and the job's size. size() == 1 is the ordinary
//   one-process run: every collective is then the identity and no message is ever sent, so code
//   written against this interface needs no "if distributed" branches.
// - Every call is made from the thread that created the communicator (the program's main
//   thread): the MPI version initialises MPI with MPI_THREAD_FUNNELED and checks that the
//   library provides it. Worker threads hand their results to the main thread.
// - Collectives (all_gather, broadcast) must be called by every process in the same order.
// - Nothing here reduces floating-point numbers: MPI only promises the same result for the same
//   number of processes, so results that must not depend on N gather the partial values and
//   add them in a fixed order (sum_in_order) on every process.
// - An error on one process must end the job, not leave the others waiting in a collective:
//   abort() does that (MPI_Abort). A process killed by a signal makes mpirun end the job.
//
// API: public, part of augflow::common; installed as <augflow/common/communicator.hpp>.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace augflow {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool root() const { return rank() == 0; }

  /// Every process's `mine`, in rank order, on every process.
  virtual std::vector<std::string> all_gather(const std::string& mine) = 0;
  /// Bulk data (gradient partials): rank r contributes bytes_per_rank[r] bytes (this process:
  /// `mine`), and `all` receives every part in rank order (it holds their sum). The counts must
  /// be the same on every process.
  virtual void all_gather_into(const void* mine, const std::vector<std::size_t>& bytes_per_rank, void* all) = 0;
  /// Personalised exchange (MPI_Alltoallv): this process sends send_bytes[r] bytes to rank r,
  /// taken in rank order from `send`, and receives recv_bytes[r] bytes from rank r, placed in
  /// rank order into `recv` (its own part is copied). The counts must match pairwise.
  virtual void all_to_all(const void* send, const std::vector<std::size_t>& send_bytes, void* recv,
                          const std::vector<std::size_t>& recv_bytes) = 0;
  /// Rank 0's `value` on every process (the argument is ignored elsewhere).
  virtual std::string broadcast(const std::string& value) = 0;
  /// Sends `bytes` to process `to` (!= rank()); returns when the buffer may be reused.
  virtual void send(int to, const std::string& bytes) = 0;
  /// A message sent to this process, if one has arrived: (sender, bytes). Never blocks.
  virtual std::optional<std::pair<int, std::string>> poll() = 0;
  /// Ends every process of the job with `status` (mpirun reports it). Never returns.
  [[noreturn]] virtual void abort(int status) = 0;

  /// Seconds spent inside the calls above (waiting included), for summary.json.
  double seconds() const { return seconds_; }
  /// Bytes this process received from others in all_gather_into and all_to_all (the bulk data
  /// of data-parallel training), for summary.json and the scaling model.
  double bytes_received() const { return bytes_received_; }
  /// Collective calls made so far (the latency term of the scaling model).
  std::size_t collectives() const { return collectives_; }

 protected:
  double seconds_ = 0;
  double bytes_received_ = 0;
  std::size_t collectives_ = 0;
};

/// The one-process communicator: rank 0 of 1. send() and poll() have nobody to talk to.
std::unique_ptr<Communicator> make_local_communicator();

/// The number of processes the launcher (mpirun, srun) started this job with, from its
/// environment (OMPI_COMM_WORLD_SIZE, PMI_SIZE, PMIX_SIZE); 1 when started otherwise.
int launcher_world_size();

/// Whether this binary was built with MPI (CMake found it and AUGFLOW_MPI was on).
bool built_with_mpi();

/// The job's communicator: MPI's when the launcher started this process (MPI_Init_thread with
/// MPI_THREAD_FUNNELED, `provided` checked), the local one otherwise (a plain run initialises no
/// MPI). Throws ConfigError when started by mpirun with more than one process but built without
/// MPI, and when the MPI library cannot call from the main thread only.
std::unique_ptr<Communicator> make_world_communicator();

/// The job's processes must agree before anything runs: `facts` are (what, value) pairs such
/// as ("config", settings JSON), ("data", a listing digest), ("version", ...). Gathers them from
/// every process; throws ConfigError on every process when one differs, naming the first rank
/// that differs from rank 0 and what (for JSON objects, the keys whose values differ).
void check_agreement(Communicator& comm, const std::vector<std::pair<std::string, std::string>>& facts);

/// The sum of parts[0] + parts[1] + ... added in index order, element by element: the fixed
/// order that makes a sum of per-chunk partials independent of which process computed which
/// chunk. All parts must have the same length.
std::vector<float> sum_in_order(const std::vector<std::vector<float>>& parts);

}  // namespace augflow
