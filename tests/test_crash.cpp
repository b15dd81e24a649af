// Crash safety: `augflow train` is killed with SIGKILL at random moments, many of them inside
// checkpoint writes. After every kill the latest checkpoints load, and resuming until the run
// finishes gives bit for bit the weights of an uninterrupted run.
//
// The test-only hook AUGFLOW_TEST_CHECKPOINT_PAUSE_MS (model/checkpoint.cpp) makes each write
// pause, half-written, so that a good share of the kills land inside one. The kill delays come
// from a fixed-seed generator: a failure can be rerun with the same moments.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <random>
#include <thread>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "model/checkpoint.hpp"
#include "tests/fixtures.hpp"
#include "tests/process.hpp"

namespace augflow {
namespace {

namespace fs = std::filesystem;

void write_two_classes(const test::TempDir& dir) {
  for (int label = 0; label < 2; ++label)
    for (int i = 0; i < 6; ++i) {
      cv::Mat image = test::noise_image(12, 12, 3, 10 * label + i);
      image *= 0.3;
      image += label == 0 ? cv::Scalar(0, 0, 170) : cv::Scalar(170, 0, 0);
      dir.write(std::string("data/") + (label ? "blue" : "red") + "/" + std::to_string(i) + ".png",
                test::encode(image, ".png"));
    }
}

bool has_temp_files(const fs::path& dir) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().find(".ckpt.tmp-") != std::string::npos) return true;
  return false;
}

void expect_same(const std::map<std::string, model::Tensor>& a, const std::map<std::string, model::Tensor>& b,
                 const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (const auto& [name, t] : a) {
    const auto& u = b.at(name);
    ASSERT_EQ(t.size(), u.size()) << what << " " << name;
    EXPECT_EQ(0, std::memcmp(t.data(), u.data(), t.size() * sizeof(float))) << what << " " << name << " differs";
  }
}

TEST(CrashSafety, SigkillAtRandomMomentsThenResumeEqualsUninterrupted) {
  test::TempDir dir;
  write_two_classes(dir);
  const std::string data = (dir.path() / "data").string();
  const auto train_args = [&](const fs::path& out) {
    return std::vector<std::string>{"train", "--train", data, "--val-split", "0.25",
                                    "--model", "conv2k3p1-bn-relu-pool2-fc2",
                                    "--aug", "pad_crop(1,12) | hflip | normalize(none)",
                                    "--epochs", "24", "--batch", "4", "--lr", "0.01", "--ema", "0.9",
                                    "--seed", "5", "--threads", "2", "--out", out.string()};
  };
  const std::vector<std::string> hook{"AUGFLOW_TEST_CHECKPOINT_PAUSE_MS=15"};
  const fs::path log = dir.path() / "augflow.log";

  const fs::path reference = dir.path() / "reference";
  const auto t0 = std::chrono::steady_clock::now();
  const auto ref = test::run_augflow(train_args(reference), log, hook);
  const double ref_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(ref.exited && ref.status == 0) << test::read_text(log);
  const auto ref_last = model::load_checkpoint((reference / "last.ckpt").string());
  const auto ref_ema = model::load_checkpoint((reference / "ema.ckpt").string());

  // Kill moments: uniform over the reference run's length (it includes the start-up).
  std::mt19937 rng(20240607);
  std::uniform_real_distribution<double> moment(0.05 * ref_ms, 0.6 * ref_ms);
  int kills = 0, inside_writes = 0, rounds = 0;
  while (kills < 12 && rounds < 10) {
    ++rounds;
    const fs::path run = dir.path() / ("run" + std::to_string(rounds));
    for (int attempt = 0; attempt < 200; ++attempt) {
      const bool resume = fs::exists(run / "last.ckpt");
      if (!resume) fs::remove_all(run);  // killed before its first epoch ended: start again
      const auto args = resume ? std::vector<std::string>{"train", "--resume", run.string()} : train_args(run);
      const pid_t pid = test::start_augflow(args, log, hook);
      const double delay_ms = moment(rng);
      std::this_thread::sleep_for(std::chrono::microseconds(static_cast<long>(delay_ms * 1000)));
      ::kill(pid, SIGKILL);
      const auto end = test::wait_child(pid);
      if (end.exited) {
        ASSERT_EQ(end.status, 0) << test::read_text(log);
        break;  // finished before the kill
      }
      ASSERT_EQ(end.signal, SIGKILL);
      ++kills;
      if (has_temp_files(run)) ++inside_writes;
      // Whatever was being written, the checkpoints under their names are whole.
      for (const char* name : {"last.ckpt", "best.ckpt", "ema.ckpt"}) {
        if (!fs::exists(run / name)) continue;
        EXPECT_NO_THROW(model::load_checkpoint((run / name).string()))
            << name << " after a kill at " << delay_ms << " ms (round " << rounds << ")";
      }
    }
    // The run finished (possibly over several resumes): the same weights, state, optimizer
    // moments and EMA weights as the uninterrupted run; no temporary file is left.
    const auto last = model::load_checkpoint((run / "last.ckpt").string());
    EXPECT_EQ(last.epoch, ref_last.epoch);
    EXPECT_EQ(last.step, ref_last.step);
    expect_same(last.params, ref_last.params, "params");
    expect_same(last.state, ref_last.state, "batch-norm state");
    expect_same(last.optimizer_state, ref_last.optimizer_state, "optimizer state");
    expect_same(model::load_checkpoint((run / "ema.ckpt").string()).params, ref_ema.params, "EMA weights");
    const auto best = model::load_checkpoint((run / "best.ckpt").string());
    const auto ref_best = model::load_checkpoint((reference / "best.ckpt").string());
    EXPECT_EQ(best.epoch, ref_best.epoch);
    expect_same(best.params, ref_best.params, "best.ckpt params");
    const std::string metrics = test::read_text(run / "metrics.csv");
    EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 25) << "a header and one row per epoch, none repeated:\n"
                                                                    << metrics;
    EXPECT_FALSE(has_temp_files(run)) << "a resumed run removes the temporary files of killed writes";
    if (HasFailure()) break;
  }
  std::printf("[crash] reference run %.0f ms; %d kills in %d rounds, %d inside a checkpoint write\n", ref_ms, kills,
              rounds, inside_writes);
  EXPECT_GE(kills, 10);
  EXPECT_GE(inside_writes, 1) << "no kill landed inside a checkpoint write";
}

}  // namespace
}  // namespace augflow
