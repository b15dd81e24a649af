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
#include <functional>
#include <map>
#include <sstream>
#include <thread>

#include "common/communicator.hpp"
#include "common/error.hpp"
#include "pipeline/trial_dispatch.hpp"
#include "model/checkpoint.hpp"
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
  void all_gather_into(const void*, const std::vector<std::size_t>&, void*) override {}
  void all_to_all(const void*, const std::vector<std::size_t>&, void*, const std::vector<std::size_t>&) override {}
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
std::string mpi_command(int np, const std::string& args, const std::string& mpi_flags = "", int timeout_seconds = 120) {
  return "timeout -k 5 " + std::to_string(timeout_seconds) + " " AUGFLOW_MPIEXEC " --oversubscribe --bind-to none " +
         std::string(AUGFLOW_MPIEXEC_PREFLAGS) + " " + mpi_flags + " " AUGFLOW_MPIEXEC_NUMPROC_FLAG " " +
         std::to_string(np) + " " + AUGFLOW_BINARY " " + args;
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
  const auto r = run_mpi(2, "preview " + data_ + " --n 2 --out " + (dir_.path() / "t.png").string());
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.status, 124) << "timed out: " << r.output;
  EXPECT_NE(r.output.find("augflow preview runs in one process"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir_.path() / "t.png"));
}

/// A data-parallel training run: a folder of 2 x 20 images and one undecodable file, batches of
/// 12 (cut into 6 chunks; the epoch's last batch has 6 positions), a model with batch norm,
/// dropout, DropConnect and stochastic depth, EMA weights, 3 epochs.
class MpiTrain : public Mpi {
 protected:
  void SetUp() override {
    Mpi::SetUp();
    if (IsSkipped()) return;
    test::write_colour_folder(big_, 20);
    const std::string junk = "this is not a PNG file";
    big_.write("data/red/broken.png", std::vector<std::uint8_t>(junk.begin(), junk.end()));
  }
  std::string train_args(const std::string& out, int threads, const std::string& extra = "", int batch = 12) const {
    return "train --train " + (big_.path() / "data").string() +
           " --val-split 0.25 --model 'conv4k3p1-bn-relu-res4-res8s2-gap-drop0.3-dc0.3-fc8-relu-fc2-sd0.7' "
           "--aug 'pad_crop(2,32) | hflip | normalize(none)' --batch " + std::to_string(batch) + " --epochs 3 --ema 0.9 --seed 11 --threads " +
           std::to_string(threads) + " --out " + (dir_.path() / out).string() + " " + extra;
  }
  test::TempDir big_;
};

/// metrics.csv without the columns that measure time.
std::string metrics_without_times(const fs::path& path) {
  std::ifstream in(path);
  std::string header, text;
  std::getline(in, header);
  const auto names = fields_of(header);
  auto keep = [&](const std::string& line) {
    const auto fields = fields_of(line);
    for (std::size_t i = 0; i < fields.size() && i < names.size(); ++i)
      if (names[i] != "seconds" && names[i] != "elapsed_seconds") text += fields[i] + "|";
    text += "\n";
  };
  keep(header);
  for (std::string line; std::getline(in, line);) keep(line);
  return text;
}

/// Every tensor of two checkpoints (weights, batch-norm statistics, optimizer state with the EMA
/// weights) is bit-identical, and they hold the same epoch and step.
void expect_same_tensors(const fs::path& a, const fs::path& b) {
  const auto x = model::load_checkpoint(a.string()), y = model::load_checkpoint(b.string());
  EXPECT_EQ(x.epoch, y.epoch);
  EXPECT_EQ(x.step, y.step);
  auto same = [&](const std::map<std::string, model::Tensor>& p, const std::map<std::string, model::Tensor>& q,
                  const char* what) {
    ASSERT_EQ(p.size(), q.size()) << what;
    for (const auto& [name, tensor] : p) {
      ASSERT_TRUE(q.count(name)) << what << " " << name;
      const auto& other = q.at(name);
      ASSERT_EQ(tensor.size(), other.size()) << name;
      EXPECT_EQ(std::memcmp(tensor.data(), other.data(), tensor.size() * sizeof(float)), 0)
          << what << " " << name << " differs between " << a << " and " << b;
    }
  };
  same(x.params, y.params, "parameter");
  same(x.state, y.state, "state");
  same(x.optimizer_state, y.optimizer_state, "optimizer state");
}

TEST_F(MpiTrain, OneToFourProcessesEndBitIdenticalToOneProcess) {
  const auto one = test::run(train_args("one", 2));
  ASSERT_EQ(one.status, 0) << one.output;
  ASSERT_NE(one.output.find("broken.png"), std::string::npos) << "the unusable file is reported: " << one.output;
  const std::string expected_metrics = metrics_without_times(dir_.path() / "one" / "metrics.csv");
  for (int np = 1; np <= 4; ++np) {
    for (int threads : {1, 2}) {
      if (np > 2 && threads == 2) continue;  // the suite's time: more threads than cores gains nothing here
      SCOPED_TRACE("np " + std::to_string(np) + ", threads " + std::to_string(threads));
      const std::string out = "np" + std::to_string(np) + "t" + std::to_string(threads);
      const auto r = run_mpi(np, train_args(out, threads));
      ASSERT_EQ(r.status, 0) << r.output;
      for (const char* file : {"last.ckpt", "best.ckpt", "ema.ckpt"})
        expect_same_tensors(dir_.path() / "one" / file, dir_.path() / out / file);
      const auto last = model::load_checkpoint((dir_.path() / out / "last.ckpt").string());
      EXPECT_GE(last.optimizer_state.size(), 3 * last.params.size()) << "Adam's two moments and the EMA weights";
      EXPECT_EQ(metrics_without_times(dir_.path() / out / "metrics.csv"), expected_metrics);
      const auto summary = test::read_json(dir_.path() / out / "summary.json");
      EXPECT_EQ(summary["world_size"], np);
      EXPECT_EQ(summary["skipped_files"], 1) << "the unusable file, found by whichever process holds it";
      EXPECT_GE(summary["communication_seconds"].get<double>(), 0.0);
      EXPECT_EQ(test::read_json(dir_.path() / out / "config.json")["processes"], np);
    }
  }
}

// --chunks decides the layout (and so the bits); the number of processes does not.
TEST_F(MpiTrain, ChunksSettingDecidesTheResultNotTheProcessCount) {
  const auto one = test::run(train_args("one", 2, "--chunks 12"));
  ASSERT_EQ(one.status, 0) << one.output;
  const auto three = run_mpi(3, train_args("three", 1, "--chunks 12"));
  ASSERT_EQ(three.status, 0) << three.output;
  expect_same_tensors(dir_.path() / "one" / "last.ckpt", dir_.path() / "three" / "last.ckpt");
  EXPECT_EQ(test::read_json(dir_.path() / "three" / "config.json")["chunks"], 12);
  const auto eight = test::run(train_args("eight", 2));
  ASSERT_EQ(eight.status, 0) << eight.output;
  const auto a = model::load_checkpoint((dir_.path() / "one" / "last.ckpt").string());
  const auto b = model::load_checkpoint((dir_.path() / "eight" / "last.ckpt").string());
  bool differs = false;
  for (const auto& [name, tensor] : a.params)
    differs = differs || std::memcmp(tensor.data(), b.params.at(name).data(), tensor.size() * sizeof(float)) != 0;
  EXPECT_TRUE(differs) << "12 chunks add the gradient partials in another order than 8";
}

TEST_F(MpiTrain, MoreProcessesThanChunksAreRefused) {
  const auto r = run_mpi(3, train_args("small", 1, "", 2));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.status, 124) << "timed out: " << r.output;
  EXPECT_NE(r.output.find("start at most 2 processes, not 3"), std::string::npos) << r.output;
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

/// How a job ended after one of its processes was killed.
struct KilledJob {
  bool killed = false;  ///< the rank was found and killed while the job ran
  int status = 0;       ///< the job's wait status
  double seconds = 0;   ///< from the kill to the job's end
  std::string log;
};

/// Runs `command` (an mpiexec line) in the background with its output in `log`; once `ready()`
/// holds, SIGKILLs the process of rank `rank` and waits for the job to end.
KilledJob kill_rank_when(const std::string& command, const fs::path& log, int rank, const std::function<bool()>& ready) {
  const std::string shell_command = "exec " + command + " > " + log.string() + " 2>&1";
  const pid_t shell = ::fork();
  if (shell == 0) {
    ::execl("/bin/sh", "sh", "-c", shell_command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto start = std::chrono::steady_clock::now();
  std::vector<pid_t> victims;
  KilledJob job;
  bool ended = false;
  while (!ended && std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (::waitpid(shell, &job.status, WNOHANG) == shell) ended = true;
    if (ended || !ready()) continue;
    for (pid_t mpiexec : children_of(shell)) {  // `timeout` runs mpiexec as its child
      victims = ranks_of(mpiexec, rank);
      if (!victims.empty()) break;
    }
    if (!victims.empty()) break;
  }
  if (victims.empty()) {
    if (!ended) {
      ::kill(shell, SIGTERM);  // `timeout` passes it on to mpiexec, which ends its processes
      ::waitpid(shell, &job.status, 0);
    }
    job.log = test::read_text(log);
    return job;
  }
  const auto killed_at = std::chrono::steady_clock::now();
  ::kill(victims[0], SIGKILL);
  ::waitpid(shell, &job.status, 0);
  job.killed = true;
  job.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  job.log = test::read_text(log);
  return job;
}

/// The job ended with a non-zero status of its own, within 30 s of the kill (not by `timeout`).
void expect_ended_by_the_kill(const KilledJob& job) {
  ASSERT_TRUE(job.killed) << "the rank was not found while the job ran: " << job.log;
  EXPECT_LT(job.seconds, 30.0);
  ASSERT_TRUE(WIFEXITED(job.status)) << job.log;
  EXPECT_NE(WEXITSTATUS(job.status), 0) << job.log;
  EXPECT_NE(WEXITSTATUS(job.status), 124) << "timed out rather than ended: " << job.log;
}

// A process killed with SIGKILL in the middle ends the job (non-zero, within 30 s); the search
// then resumes in one process, skipping the finished trials, and ends as an uninterrupted one.
TEST_F(Mpi, KilledProcessEndsTheJobAndTheSearchResumes) {
  allow_open_mpi_here();
  const std::string kLonger = "--trials 12 --stages 1 --epochs 20";  // about a second per trial
  // Once a trial finished: rank 2, a child of mpiexec.
  const auto job = kill_rank_when(mpi_command(3, search_args("s", "", kLonger)), dir_.path() / "killed.log", 2,
                                  [&] { return fs::exists(dir_.path() / "s" / "results.json"); });
  expect_ended_by_the_kill(job);

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

// A killed process ends a data-parallel run; last.ckpt stays loadable, and --resume with
// another number of processes ends bit-identical to the uninterrupted one-process run.
TEST_F(MpiTrain, KilledProcessEndsTheRunWhichResumesOnOtherProcessCounts) {
  const auto whole = test::run(train_args("whole", 1));
  ASSERT_EQ(whole.status, 0) << whole.output;
  allow_open_mpi_here();
  // Each checkpoint write pauses (the test hook of model/checkpoint.cpp), so the kill lands
  // while the run goes on.
  const std::string command = mpi_command(3, train_args("run", 1), "-x AUGFLOW_TEST_CHECKPOINT_PAUSE_MS=150");
  const auto last = dir_.path() / "run" / "last.ckpt";
  const auto job = kill_rank_when(command, dir_.path() / "killed.log", 1, [&] { return fs::exists(last); });
  expect_ended_by_the_kill(job);
  ASSERT_NO_THROW(model::load_checkpoint(last.string())) << job.log;
  EXPECT_LT(model::load_checkpoint(last.string()).epoch, 3) << "killed before the end: " << job.log;

  const auto resumed = run_mpi(2, "train --resume " + (dir_.path() / "run").string());
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  for (const char* file : {"last.ckpt", "best.ckpt", "ema.ckpt"})
    expect_same_tensors(dir_.path() / "whole" / file, dir_.path() / "run" / file);
  EXPECT_EQ(metrics_without_times(dir_.path() / "run" / "metrics.csv"),
            metrics_without_times(dir_.path() / "whole" / "metrics.csv"));
}

#endif  // AUGFLOW_MPIEXEC

}  // namespace
}  // namespace augflow
