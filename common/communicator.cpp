#include "common/communicator.hpp"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace augflow {
namespace {

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<std::string> all_gather(const std::string& mine) override { return {mine}; }
  void all_gather_into(const void* mine, const std::vector<std::size_t>& bytes_per_rank, void* all) override {
    if (!bytes_per_rank.empty() && bytes_per_rank[0] > 0) std::memcpy(all, mine, bytes_per_rank[0]);
  }
  void all_to_all(const void* send, const std::vector<std::size_t>& send_bytes, void* recv,
                  const std::vector<std::size_t>&) override {
    if (!send_bytes.empty() && send_bytes[0] > 0) std::memcpy(recv, send, send_bytes[0]);
  }
  std::string broadcast(const std::string& value) override { return value; }
  void send(int to, const std::string&) override {
    throw std::logic_error("a one-process job has no process " + std::to_string(to) + " to send to");
  }
  std::optional<std::pair<int, std::string>> poll() override { return std::nullopt; }
  [[noreturn]] void abort(int status) override { std::exit(status); }
};

/// What differs between two values of one fact: for JSON objects the keys, else both values.
std::string difference(const std::string& mine, const std::string& theirs) {
  const auto a = nlohmann::json::parse(mine, nullptr, false);
  const auto b = nlohmann::json::parse(theirs, nullptr, false);
  auto shorten = [](std::string text) { return text.size() > 200 ? text.substr(0, 200) + "..." : text; };
  if (a.is_object() && b.is_object()) {
    std::string keys;
    for (const auto& [key, value] : a.items())
      if (!b.contains(key) || b.at(key) != value)
        keys += (keys.empty() ? "" : "; ") + key + " " + shorten(value.dump()) + " vs " +
                (b.contains(key) ? shorten(b.at(key).dump()) : std::string("(absent)"));
    for (const auto& [key, value] : b.items())
      if (!a.contains(key)) keys += (keys.empty() ? "" : "; ") + key + " (absent) vs " + shorten(value.dump());
    if (!keys.empty()) return keys;
  }
  return shorten(mine) + " vs " + shorten(theirs);
}

}  // namespace

std::unique_ptr<Communicator> make_local_communicator() { return std::make_unique<LocalCommunicator>(); }

int launcher_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"}) {
    const char* value = std::getenv(name);
    if (!value || !*value) continue;
    char* end = nullptr;
    const long n = std::strtol(value, &end, 10);
    if (*end == '\0' && n >= 1) return static_cast<int>(n);
  }
  return 1;
}

#if !AUGFLOW_HAVE_MPI
bool built_with_mpi() { return false; }

std::unique_ptr<Communicator> make_world_communicator() {
  const int n = launcher_world_size();
  if (n > 1)
    throw ConfigError("started as one of " + std::to_string(n) +
                      " processes (by mpirun or srun), but this augflow was built without MPI, so the processes "
                      "cannot work together and would each run the whole job. Install Open MPI (libopenmpi-dev, "
                      "see scripts/deps.sh) and rebuild (CMake finds it; -DAUGFLOW_MPI=ON), or run augflow without "
                      "mpirun");
  return make_local_communicator();
}
#endif

void check_agreement(Communicator& comm, const std::vector<std::pair<std::string, std::string>>& facts) {
  nlohmann::json mine = nlohmann::json::array();
  for (const auto& [what, value] : facts) mine.push_back({what, value});
  const auto all = comm.all_gather(mine.dump());
  const auto reference = nlohmann::json::parse(all.at(0));
  for (int r = 1; r < static_cast<int>(all.size()); ++r) {
    const auto theirs = nlohmann::json::parse(all[r]);
    for (std::size_t i = 0; i < reference.size(); ++i) {
      const std::string what = reference[i].at(0);
      const std::string value0 = reference[i].at(1);
      const std::string value = i < theirs.size() ? theirs[i].at(1).get<std::string>() : std::string("(missing)");
      if (value != value0)
        throw ConfigError("the processes of this job disagree: rank " + std::to_string(r) + " differs from rank 0 in " +
                          what + " (rank 0 vs rank " + std::to_string(r) + ": " + difference(value0, value) +
                          "). Every process must run the same augflow with the same options on the same data "
                          "(the same paths on shared storage)");
    }
  }
}

std::vector<float> sum_in_order(const std::vector<std::vector<float>>& parts) {
  if (parts.empty()) return {};
  std::vector<float> total(parts[0].size(), 0.0f);
  for (const auto& part : parts) {
    if (part.size() != total.size()) throw std::invalid_argument("sum_in_order: parts of different lengths");
    for (std::size_t k = 0; k < total.size(); ++k) total[k] += part[k];
  }
  return total;
}

}  // namespace augflow
