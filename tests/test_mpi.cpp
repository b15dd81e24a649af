// The processes of a job: the communicator's contract (one-process version, agreement check,
// fixed-order sums), the wire form of search trials, and whole jobs launched through mpirun
// (the mpiexec CMake found; skipped in builds without MPI): a distributed search gives the
// lines and results of a one-process search for 1 to 4 processes, processes that disagree
// stop before training with the rank named, a killed process ends the job and the search
// resumes, and commands that run in one process refuse to start as several.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "common/communicator.hpp"
#include "common/error.hpp"
#include "pipeline/trial_dispatch.hpp"
#include "tests/fixtures.hpp"
#include "tests/process.hpp"

namespace augflow {
namespace {
namespace fs = std::filesystem;

/// A communicator of `size` processes seen from rank 0, whose all_gather answers with what the
/// test prepared for the other ranks (to test check_agreement without launching processes).
class ScriptedCommunicator final : public Communicator {
 public:
  explicit ScriptedCommunicator(std::vector<std::string> others) : others_(std::move(others)) {}
  int rank() const override { return 0; }
  int size() const override { return static_cast<int>(others_.size()) + 1; }
  std::vector<std::string> all_gather(const std::string& mine) override {
    std::vector<std::string> all{mine};
    all.insert(all.end(), others_.begin(), others_.end());
    return all;
  }
  std::string broadcast(const std::string& value) override { return value; }
  void send(int, const std::string&) override {}
  std::optional<std::pair<int, std::string>> poll() override { return std::nullopt; }
  [[noreturn]] void abort(int) override { std::abort(); }

 private:
  std::vector<std::string> others_;
};

/// Sets an environment variable for the life of the object, restoring the old value after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(Communicator, LocalIsRankZeroOfOne) {
  auto comm = make_local_communicator();
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  EXPECT_TRUE(comm->root());
  EXPECT_EQ(comm->all_gather("x"), std::vector<std::string>{"x"});
  EXPECT_EQ(comm->broadcast("y"), "y");
  EXPECT_FALSE(comm->poll());
  EXPECT_THROW(comm->send(1, "z"), std::logic_error);
  check_agreement(*comm, {{"version", "1"}});  // nobody to disagree with
}

TEST(Communicator, LauncherWorldSizeComesFromTheEnvironment) {
  ScopedEnv pmix("PMIX_SIZE", nullptr), pmi("PMI_SIZE", nullptr);
  {
    ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", nullptr);
    EXPECT_EQ(launcher_world_size(), 1);
  }
  {
    ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", "3");
    EXPECT_EQ(launcher_world_size(), 3);
  }
  {
    ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", "3x");
    EXPECT_EQ(launcher_world_size(), 1) << "not a number: not a launcher's";
  }
  {
    ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", nullptr);
    ScopedEnv slurm("PMI_SIZE", "4");
    EXPECT_EQ(launcher_world_size(), 4);
  }
}

// Without MPI a job of several processes cannot work together: each would run the whole job.
TEST(Communicator, WithoutMpiSeveralProcessesAreRefused) {
  if (built_with_mpi()) GTEST_SKIP() << "built with MPI (the refusal is for builds without it)";
  ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", "2");
  test::expect_throws_with([] { make_world_communicator(); }, "built without MPI");
  const auto r = test::run("train --train fashion-mnist --out /nonexistent/never");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("built without MPI"), std::string::npos) << r.output;
}

TEST(Communicator, DisagreementNamesTheRankAndWhatDiffers) {
  const std::string mine = R"([["version","augflow 1"],["settings","{\"lr\":0.01,\"batch\":8}"]])";
  ScriptedCommunicator same({mine, mine});
  check_agreement(same, {{"version", "augflow 1"}, {"settings", R"({"lr":0.01,"batch":8})"}});
  const std::string other = R"([["version","augflow 1"],["settings","{\"lr\":0.02,\"batch\":8}"]])";
  ScriptedCommunicator differs({mine, other});
  try {
    check_agreement(differs, {{"version", "augflow 1"}, {"settings", R"({"lr":0.01,"batch":8})"}});
    ADD_FAILURE() << "no error";
  } catch (const ConfigError& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("rank 2 differs from rank 0 in settings"), std::string::npos) << text;
    EXPECT_NE(text.find("lr 0.01 vs 0.02"), std::string::npos) << text;
    EXPECT_EQ(text.find("batch"), std::string::npos) << "only what differs: " << text;
  }
  ScriptedCommunicator old({R"([["version","augflow 0.9"],["settings","{}"]])"});
  test::expect_throws_with([&] { check_agreement(old, {{"version", "augflow 1"}, {"settings", "{}"}}); },
                           "rank 1 differs from rank 0 in version");
}

// Partial sums of chunks added in chunk order give the same bits wherever each chunk was
// computed; an addition in another grouping generally does not (what MPI_Allreduce may do).
TEST(Communicator, SumInOrderAddsInChunkOrder) {
  std::vector<std::vector<float>> parts;
  for (int c = 0; c < 5; ++c) parts.push_back({1e8f * (c % 2 ? -1 : 1), 0.1f * c, 3.0f + c, 1e-3f});
  const auto total = sum_in_order(parts);
  for (std::size_t k = 0; k < total.size(); ++k) {
    float expected = 0.0f;
    for (const auto& p : parts) expected += p[k];
    EXPECT_EQ(total[k], expected);
  }
  EXPECT_THROW(sum_in_order({{1.0f}, {1.0f, 2.0f}}), std::invalid_argument);
}

TEST(TrialDispatch, WireFormRoundTripsExactly) {
  pipeline::TrialTask task{2, 7, {{1.4052063e-4 / 3.0, "x"}, {8, "8"}, {0, "adam"}}};
  std::size_t id = 0;
  const auto back = pipeline::task_from_wire(pipeline::task_to_wire(41, task), id);
  EXPECT_EQ(id, 41u);
  EXPECT_EQ(back.stage, 2);
  EXPECT_EQ(back.index, 7);
  EXPECT_EQ(back.params, task.params) << "the number's bits and the text as drawn";

  pipeline::TrialResult r;
  r.stage = 2;
  r.index = 7;
  r.params = task.params;
  r.seed = 0xfedcba9876543210ull;
  r.val_accuracy = 2.0 / 3.0;
  r.final_val_accuracy = 0.1;
  r.ok = false;
  r.error = "diverged";
  r.run_dir = "stage2/trial007";
  const auto again = pipeline::result_from_wire(pipeline::result_to_wire(5, r), id);
  ASSERT_TRUE(again);
  EXPECT_EQ(id, 5u);
  EXPECT_EQ(again->seed, r.seed);
  EXPECT_EQ(again->val_accuracy, r.val_accuracy);
  EXPECT_EQ(again->params, r.params);
  EXPECT_EQ(again->error, "diverged");
  EXPECT_FALSE(again->ok);
  EXPECT_FALSE(pipeline::result_from_wire(pipeline::result_to_wire(3, std::nullopt), id)) << "interrupted";
}

#ifdef AUGFLOW_MPIEXEC

/// What Open MPI needs as root and in containers (scripts/test.sh sets them too).
void allow_open_mpi_here() {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  ::setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 0);
}

/// `mpiexec -n NP augflow ARGS` (more processes than cores allowed, no binding: each process
/// runs its own threads), ended by `timeout` if it hangs.
std::string mpi_command(int np, const std::string& args, int timeout_seconds = 120) {
  return "timeout -k 5 " + std::to_string(timeout_seconds) + " " AUGFLOW_MPIEXEC " --oversubscribe --bind-to none " +
         std::string(AUGFLOW_MPIEXEC_PREFLAGS) + " " AUGFLOW_MPIEXEC_NUMPROC_FLAG " " + std::to_string(np) + " " +
         AUGFLOW_BINARY " " + args;
}

test::Result run_mpi(int np, const std::string& args) {
  allow_open_mpi_here();
  return test::run_program(mpi_command(np, args), "");
}

/// The lines a search prints that must not depend on the processes: every line but the timing
/// (and the search folder's path in the last line).
std::vector<std::string> result_lines(const std::string& output) {
  std::vector<std::string> lines;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("best val_acc", 0) == 0) line = line.substr(0, line.find(" in "));
    if (line.rfind("val_acc: ", 0) == 0 || line.rfind("stage ", 0) == 0 || line.rfind("warning: stage", 0) == 0 ||
        line.rfind("best val_acc", 0) == 0)
      lines.push_back(line);
  }
  return lines;
}

/// The fields of one CSV row (no quoting needed here), empty ones included.
std::vector<std::string> fields_of(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  for (std::size_t comma; (comma = line.find(',', start)) != std::string::npos; start = comma + 1)
    fields.push_back(line.substr(start, comma - start));
  fields.push_back(line.substr(start));
  return fields;
}

/// results.csv without its seconds column (the only one that may differ).
std::string csv_without_seconds(const fs::path& path) {
  std::ifstream in(path);
  std::string header, text;
  std::getline(in, header);
  const auto names = fields_of(header);
  const auto seconds = std::find(names.begin(), names.end(), "seconds") - names.begin();
  auto keep = [&](const std::string& line) {
    const auto fields = fields_of(line);
    for (std::size_t i = 0; i < fields.size(); ++i)
      if (static_cast<std::ptrdiff_t>(i) != seconds) text += fields[i] + "|";
    text += "\n";
  };
  keep(header);
  for (std::string line; std::getline(in, line);) keep(line);
  return text;
}

class Mpi : public ::testing::Test {
 protected:
  void SetUp() override {
    // Open MPI itself is not built for the sanitizers: its allocations at MPI_Init show as leaks
    // and its copies trip the interceptors in every process of the job. The sanitizer builds
    // test the communicator's one-process side; the Release stage runs these jobs.
    if (test::kSanitized) GTEST_SKIP() << "mpiexec jobs run in the Release stage, not under sanitizers";
    test::write_colour_folder(dir_, 6);
    data_ = (dir_.path() / "data").string();
  }
  /// By default a two-stage search of 5 tiny trials (a tenth of a second each).
  std::string search_args(const std::string& out, const std::string& extra = "",
                          const std::string& size = "--trials 5 --stages 2 --epochs 1") const {
    return "search --train " + data_ + " --val-split 0.25 --model 'fc{hidden}-relu-fc2' --aug 'pad_crop(0,32) | "
           "normalize(none)' --batch 4 --threads 1 --seed 5 --space 'lr=log(1e-3,1e-1) hidden=choice(4,8)' " +
           size + " --out " + (dir_.path() / out).string() + " " + extra;
  }
  test::TempDir dir_;
  std::string data_;
};

TEST_F(Mpi, SearchGivesTheOneProcessResultsOnOneToFourProcesses) {
  const auto one = test::run(search_args("one"));
  ASSERT_EQ(one.status, 0) << one.output;
  const auto expected_lines = result_lines(one.output);
  ASSERT_GE(expected_lines.size(), 10u) << one.output;
  const std::string expected_csv = csv_without_seconds(dir_.path() / "one" / "results.csv");
  for (int np = 1; np <= 4; ++np) {
    SCOPED_TRACE("np " + std::to_string(np));
    const std::string out = "np" + std::to_string(np);
    const auto r = run_mpi(np, search_args(out));
    ASSERT_EQ(r.status, 0) << r.output;
    EXPECT_EQ(result_lines(r.output), expected_lines) << r.output;
    EXPECT_EQ(csv_without_seconds(dir_.path() / out / "results.csv"), expected_csv);
    if (np > 1) {
      EXPECT_NE(r.output.find("over " + std::to_string(np) + " processes"), std::string::npos) << r.output;
    }
    EXPECT_EQ(test::read_json(dir_.path() / out / "results.json")["world_size"], np);
  }
}

TEST_F(Mpi, DisagreeingProcessesStopBeforeAnyTrialNamingTheRank) {
  allow_open_mpi_here();
  // Two programs in one job (mpiexec's colon syntax): rank 1 was given another --lr.
  const std::string command = mpi_command(1, search_args("s", "--lr 0.01")) + " : " AUGFLOW_MPIEXEC_NUMPROC_FLAG " 1 " +
                              AUGFLOW_BINARY " " + search_args("s", "--lr 0.02");
  const auto r = test::run_program(command, "");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.status, 124) << "timed out: " << r.output;
  EXPECT_NE(r.output.find("rank 1 differs from rank 0 in settings"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("lr 0.01 vs 0.02"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_.path() / "s" / "stage1")) << "no trial started";
}

TEST_F(Mpi, CommandsOfOneProcessRefuseSeveral) {
  const auto r = run_mpi(2, "train --train " + data_ + " --model fc2 --epochs 1 --out " + (dir_.path() / "t").string());
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.status, 124) << "timed out: " << r.output;
  EXPECT_NE(r.output.find("augflow train runs in one process"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_.path() / "t"));
}

/// The pids of the processes whose parent is `parent`.
std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> found;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    const std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const auto close = text.rfind(')');  // the command name may hold spaces and parentheses
    if (close == std::string::npos || close + 2 > text.size()) continue;
    std::istringstream rest(text.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) found.push_back(static_cast<pid_t>(std::stoi(name)));
  }
  return found;
}

/// Those of them whose environment says they are rank `rank` of an Open MPI job.
std::vector<pid_t> ranks_of(pid_t parent, int rank) {
  std::vector<pid_t> found;
  for (pid_t pid : children_of(parent)) {
    std::ifstream environ_file("/proc/" + std::to_string(pid) + "/environ");
    const std::string env((std::istreambuf_iterator<char>(environ_file)), std::istreambuf_iterator<char>());
    if (env.find(std::string("OMPI_COMM_WORLD_RANK=") + std::to_string(rank) + '\0') != std::string::npos)
      found.push_back(pid);
  }
  return found;
}

// A process killed with SIGKILL in the middle ends the job (non-zero, within 30 s); the search
// then resumes in one process, skipping the finished trials, and ends as an uninterrupted one.
TEST_F(Mpi, KilledProcessEndsTheJobAndTheSearchResumes) {
  allow_open_mpi_here();
  const std::string kLonger = "--trials 12 --stages 1 --epochs 20";  // about a second per trial
  const auto log = dir_.path() / "killed.log";
  const std::string command = "exec " + mpi_command(3, search_args("s", "", kLonger)) + " > " +
                              log.string() + " 2>&1";
  const pid_t shell = ::fork();
  if (shell == 0) {
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Once a trial finished: rank 2, a child of mpiexec.
  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> victims;
  int status = 0;
  bool ended = false;
  while (!ended && std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (::waitpid(shell, &status, WNOHANG) == shell) ended = true;
    if (!fs::exists(dir_.path() / "s" / "results.json")) continue;
    for (pid_t mpiexec : children_of(shell)) {  // `timeout` runs mpiexec as its child
      victims = ranks_of(mpiexec, 2);
      if (!victims.empty()) break;
    }
    if (!victims.empty()) break;
  }
  if (victims.empty() && !ended) {
    ::kill(shell, SIGTERM);  // `timeout` passes it on to mpiexec, which ends its processes
    ::waitpid(shell, &status, 0);
  }
  ASSERT_EQ(victims.size(), 1u) << "rank 2 not found while the search ran: " << test::read_text(log);
  const auto killed_at = std::chrono::steady_clock::now();
  ::kill(victims[0], SIGKILL);
  ::waitpid(shell, &status, 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  EXPECT_LT(seconds, 30.0);
  ASSERT_TRUE(WIFEXITED(status)) << test::read_text(log);
  EXPECT_NE(WEXITSTATUS(status), 0) << test::read_text(log);
  EXPECT_NE(WEXITSTATUS(status), 124) << "timed out rather than ended: " << test::read_text(log);

  // Resumed in one process: the finished trials are skipped, the rest run.
  const auto resumed = test::run("search --resume " + (dir_.path() / "s").string());
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("finished before"), std::string::npos) << resumed.output;
  // The uninterrupted search of the same 12 trials, for comparison.
  const auto whole = test::run(search_args("whole", "", kLonger));
  ASSERT_EQ(whole.status, 0) << whole.output;
  EXPECT_EQ(csv_without_seconds(dir_.path() / "s" / "results.csv"),
            csv_without_seconds(dir_.path() / "whole" / "results.csv"));
}

#endif  // AUGFLOW_MPIEXEC

}  // namespace
}  // namespace augflow
