// The MPI communicator (built when CMake finds MPI and AUGFLOW_MPI is on). See communicator.hpp
// for the contract; this file only maps it onto MPI calls.
#include "common/communicator.hpp"

#if AUGFLOW_HAVE_MPI

#include <mpi.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <iostream>

#include "common/error.hpp"

namespace augflow {
namespace {

constexpr int kTag = 7;  // every point-to-point message of augflow

/// Adds the wall time of one call to `seconds`.
class Timed {
 public:
  explicit Timed(double& seconds) : seconds_(seconds), start_(std::chrono::steady_clock::now()) {}
  ~Timed() { seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  double& seconds_;
  std::chrono::steady_clock::time_point start_;
};

int count_of(std::size_t bytes) {
  if (bytes > static_cast<std::size_t>(INT_MAX)) throw Error("a message of " + std::to_string(bytes) + " bytes is over MPI's 2 GB limit");
  return static_cast<int>(bytes);
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator() {
    int provided = MPI_THREAD_SINGLE;
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
    if (provided < MPI_THREAD_FUNNELED) {
      MPI_Finalize();
      throw ConfigError("the MPI library provides no thread support (MPI_THREAD_FUNNELED): augflow trains with "
                        "threads and calls MPI from its main thread only; use an MPI built with threads");
    }
    // Errors of MPI calls come back as return codes that we turn into exceptions, and an
    // exception on one process ends the job through abort(): nobody waits forever.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiCommunicator() override { MPI_Finalize(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::vector<std::string> all_gather(const std::string& mine) override {
    Timed timed(seconds_);
    ++collectives_;
    const int length = count_of(mine.size());
    std::vector<int> lengths(size_), offsets(size_);
    check(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, MPI_COMM_WORLD), "MPI_Allgather");
    std::size_t total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets[r] = count_of(total);
      total += static_cast<std::size_t>(lengths[r]);
    }
    std::string all(total, '\0');
    check(MPI_Allgatherv(mine.data(), length, MPI_BYTE, all.data(), lengths.data(), offsets.data(), MPI_BYTE,
                         MPI_COMM_WORLD),
          "MPI_Allgatherv");
    std::vector<std::string> result;
    for (int r = 0; r < size_; ++r) result.push_back(all.substr(offsets[r], lengths[r]));
    return result;
  }

  void all_gather_into(const void* mine, const std::vector<std::size_t>& bytes_per_rank, void* all) override {
    Timed timed(seconds_);
    ++collectives_;
    std::vector<int> lengths(size_), offsets(size_);
    std::size_t total = 0;
    for (int r = 0; r < size_; ++r) {
      lengths[r] = count_of(bytes_per_rank.at(r));
      offsets[r] = count_of(total);
      total += bytes_per_rank[r];
    }
    check(MPI_Allgatherv(mine, lengths[rank_], MPI_BYTE, all, lengths.data(), offsets.data(), MPI_BYTE, MPI_COMM_WORLD),
          "MPI_Allgatherv");
    bytes_received_ += static_cast<double>(total - bytes_per_rank[rank_]);
  }

  void all_to_all(const void* send, const std::vector<std::size_t>& send_bytes, void* recv,
                  const std::vector<std::size_t>& recv_bytes) override {
    Timed timed(seconds_);
    ++collectives_;
    std::vector<int> send_counts(size_), send_offsets(size_), recv_counts(size_), recv_offsets(size_);
    std::size_t sent = 0, received = 0;
    for (int r = 0; r < size_; ++r) {
      send_counts[r] = count_of(send_bytes.at(r));
      send_offsets[r] = count_of(sent);
      sent += send_bytes[r];
      recv_counts[r] = count_of(recv_bytes.at(r));
      recv_offsets[r] = count_of(received);
      received += recv_bytes[r];
    }
    check(MPI_Alltoallv(send, send_counts.data(), send_offsets.data(), MPI_BYTE, recv, recv_counts.data(),
                        recv_offsets.data(), MPI_BYTE, MPI_COMM_WORLD),
          "MPI_Alltoallv");
    bytes_received_ += static_cast<double>(received - recv_bytes[rank_]);
  }

  std::string broadcast(const std::string& value) override {
    Timed timed(seconds_);
    ++collectives_;
    int length = rank_ == 0 ? count_of(value.size()) : 0;
    check(MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast");
    std::string result = rank_ == 0 ? value : std::string(static_cast<std::size_t>(length), '\0');
    check(MPI_Bcast(result.data(), length, MPI_BYTE, 0, MPI_COMM_WORLD), "MPI_Bcast");
    return result;
  }

  void send(int to, const std::string& bytes) override {
    Timed timed(seconds_);
    check(MPI_Send(bytes.data(), count_of(bytes.size()), MPI_BYTE, to, kTag, MPI_COMM_WORLD), "MPI_Send");
  }

  std::optional<std::pair<int, std::string>> poll() override {
    Timed timed(seconds_);
    int arrived = 0;
    MPI_Status status;
    check(MPI_Iprobe(MPI_ANY_SOURCE, kTag, MPI_COMM_WORLD, &arrived, &status), "MPI_Iprobe");
    if (!arrived) return std::nullopt;
    int length = 0;
    MPI_Get_count(&status, MPI_BYTE, &length);
    std::string bytes(static_cast<std::size_t>(length), '\0');
    check(MPI_Recv(bytes.data(), length, MPI_BYTE, status.MPI_SOURCE, kTag, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "MPI_Recv");
    return std::pair{status.MPI_SOURCE, std::move(bytes)};
  }

  [[noreturn]] void abort(int status) override {
    MPI_Abort(MPI_COMM_WORLD, status);
    std::_Exit(status);  // MPI_Abort does not return; this keeps the promise if it did
  }

 private:
  void check(int code, const char* call) const {
    if (code == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    throw Error(std::string(call) + " failed on rank " + std::to_string(rank_) + ": " + std::string(text, length));
  }

  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

bool built_with_mpi() { return true; }

std::unique_ptr<Communicator> make_world_communicator() {
  // A plain run (no launcher in the environment) initialises no MPI: it starts as fast as
  // before and needs no MPI runtime at all.
  const bool launched = std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMIX_RANK") || std::getenv("PMI_SIZE");
  if (!launched) return make_local_communicator();
  return std::make_unique<MpiCommunicator>();
}

}  // namespace augflow

#endif  // AUGFLOW_HAVE_MPI
