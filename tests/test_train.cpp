// The training loop end to end on a tiny generated data set: the run folder's contract and
// that a model actually learns.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <tbb/global_control.h>

#include "common/error.hpp"
#include "model/checkpoint.hpp"
#include "model/config.hpp"
#include "model/net.hpp"
#include "pipeline/evaluator.hpp"
#include "pipeline/trainer.hpp"
#include "tests/fixtures.hpp"
#include "tests/model_fixtures.hpp"

namespace augflow::pipeline {
namespace {

using test::write_colour_folder;

/// A small run over write_colour_folder's data (the tests change what they vary).
TrainConfig colour_config(const test::TempDir& dir) {
  TrainConfig c;
  c.train = (dir.path() / "data").string();
  c.model = "fc8-relu-drop0.3-fc2";
  c.aug = "pad_crop(0,32) | hflip | normalize(none)";
  c.batch = 4;
  return c;
}

/// Every tensor of `a` equals (bit for bit) the tensor of the same name in `b`.
void expect_same_tensors(const std::map<std::string, model::Tensor>& a, const std::map<std::string, model::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, tensor] : a) {
    const auto& other = b.at(name);
    ASSERT_EQ(tensor.size(), other.size()) << name;
    EXPECT_EQ(0, std::memcmp(tensor.data(), other.data(), tensor.size() * sizeof(float))) << name;
  }
}

using test::read_json;

TEST(Train, WritesTheRunFolderAndLearns) {
  test::TempDir dir;
  write_colour_folder(dir, 20);
  TrainConfig c = test::learning_colour_config(dir);
  std::vector<std::string> lines;
  std::size_t progress_calls = 0;
  TrainProgress last;
  const TrainSummary s = train(
      c, [&](const std::string& line) { lines.push_back(line); }, false, nullptr,
      [&](const TrainProgress& p) {
        ++progress_calls;
        last = p;
      });
  EXPECT_EQ(lines.size(), 6u) << "one log line per epoch";
  EXPECT_GT(progress_calls, 6u) << "progress after every batch";
  EXPECT_EQ(last.epoch, 6);
  EXPECT_EQ(last.batch, last.batches);

  EXPECT_EQ(s.epochs_run, 6);
  EXPECT_GE(s.best_val_accuracy, 0.9) << "a linear model separates red from blue";
  const auto out = dir.path() / "run";
  for (const char* file : {"config.json", "metrics.csv", "last.ckpt", "best.ckpt", "summary.json", "curves.png"})
    EXPECT_TRUE(std::filesystem::exists(out / file)) << file;
  EXPECT_EQ(cv::imread((out / "curves.png").string()).cols, 960) << "the curves are a readable PNG";
  const auto summary = read_json(out / "summary.json");
  for (const char* key : {"best_val_accuracy", "best_epoch", "epochs_run", "final_val_accuracy",
                          "train_images_per_second", "skipped_files"})
    EXPECT_TRUE(summary.contains(key)) << key;
  EXPECT_EQ(summary["epochs_run"], 6);
  EXPECT_EQ(read_json(out / "config.json")["val_aug"], "center_crop(resize=32,size=32) | normalize(preset=none)");

  std::ifstream metrics(out / "metrics.csv");
  std::string line;
  int rows = 0;
  while (std::getline(metrics, line)) ++rows;
  EXPECT_EQ(rows, 7) << "a header and one row per epoch";

  const auto best = model::load_checkpoint((out / "best.ckpt").string());
  EXPECT_EQ(best.epoch, s.best_epoch);
  EXPECT_EQ(best.class_names, (std::vector<std::string>{"blue", "red"}));
  EXPECT_FALSE(best.optimizer_state.empty());
}

TEST(Train, SameSeedSameResult) {
  test::TempDir dir;
  write_colour_folder(dir, 10);
  TrainConfig c = colour_config(dir);
  c.epochs = 2;
  auto run = [&](const std::string& name, int threads) {
    c.out = (dir.path() / name).string();
    c.threads = threads;
    train(c, [](const std::string&) {});
    return model::load_checkpoint((dir.path() / name / "last.ckpt").string());
  };
  expect_same_tensors(run("a", 1).params, run("b", 2).params);
}

// The conv, batch-norm and residual layers too, and the whole process limited to one thread
// (loader and layers) against two: one epoch gives the same bits, batch-norm statistics and
// optimizer moments included.
TEST(Train, SameSeedSameResultForConvBatchNormAndResidualOnOneOrTwoThreads) {
  test::TempDir dir;
  write_colour_folder(dir, 8);
  for (const std::string model : {"conv4k3p1-bn-relu-pool2-drop0.2-fc2", "conv4k3p1-bn-relu-res4-res8s2-gap-fc2-sd0.8"}) {
    TrainConfig c = colour_config(dir);
    c.model = model;
    c.batch = 8;  // 8 x 4 x 32 x 32 floats per conv output: the layers take their parallel path
    c.epochs = 1;
    auto run = [&](const std::string& name, int threads) {
      c.out = (dir.path() / name).string();
      c.threads = threads;
      tbb::global_control limit(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
      train(c, [](const std::string&) {});
      return model::load_checkpoint((dir.path() / name / "last.ckpt").string());
    };
    const auto one = run(model + "-1", 1);
    const auto two = run(model + "-2", 2);
    SCOPED_TRACE(model);
    expect_same_tensors(one.params, two.params);
    expect_same_tensors(one.state, two.state);
    expect_same_tensors(one.optimizer_state, two.optimizer_state);
  }
}

TEST(Train, SnapshotsAreTakenAtTheCycleEnds) {
  test::TempDir dir;
  write_colour_folder(dir, 6);
  TrainConfig c = colour_config(dir);
  c.epochs = 4;
  c.snapshots = 2;  // no schedule: two cosine cycles of 2 epochs
  c.out = (dir.path() / "run").string();
  const auto summary = train(c, [](const std::string&) {});
  ASSERT_EQ(summary.snapshots.size(), 2u);
  const auto first = model::load_checkpoint((dir.path() / "run" / "snapshot-1.ckpt").string());
  const auto second = model::load_checkpoint((dir.path() / "run" / "snapshot-2.ckpt").string());
  EXPECT_EQ(first.epoch, 2);
  EXPECT_EQ(second.epoch, 4);
  expect_same_tensors(second.params, model::load_checkpoint((dir.path() / "run" / "last.ckpt").string()).params);
  EXPECT_EQ(read_json(dir.path() / "run" / "summary.json").at("snapshots").size(), 2u);
  EXPECT_EQ(read_json(dir.path() / "run" / "config.json").at("schedule"), "restarts:2:1:0");
}

TEST(Train, SnapshotPlans) {
  model::Schedule s = model::parse_schedule("constant");
  EXPECT_EQ(plan_snapshots(5, 15, s), (std::vector<int>{3, 6, 9, 12, 15}));
  EXPECT_EQ(model::print_schedule(s), "restarts:3:1:0");
  s = model::parse_schedule("restarts:2:2");  // cycles end after 2, 6, 14 epochs
  EXPECT_EQ(plan_snapshots(2, 14, s), (std::vector<int>{6, 14}));
  s = model::parse_schedule("cyclic:0.1:4");
  EXPECT_EQ(plan_snapshots(2, 12, s), (std::vector<int>{8, 12}));
  s = model::parse_schedule("constant");
  EXPECT_TRUE(plan_snapshots(0, 7, s).empty());
  EXPECT_EQ(model::print_schedule(s), "constant") << "no snapshots: the schedule is left alone";

  auto plan = [](int k, int epochs, const std::string& schedule) {
    return [=] {
      model::Schedule parsed = model::parse_schedule(schedule);
      plan_snapshots(k, epochs, parsed);
    };
  };
  test::expect_throws_with(plan(5, 12, "constant"), "multiple of 5");
  test::expect_throws_with(plan(2, 10, "cosine"), "cycles");
  test::expect_throws_with(plan(3, 6, "restarts:4:1"), "only 1 cycle");
}

TEST(Train, BadSettingsAreClearErrors) {
  test::TempDir dir;
  write_colour_folder(dir, 4);
  TrainConfig c;
  c.train = (dir.path() / "data").string();
  c.aug = "pad_crop(0,32) | normalize(none)";
  c.out = (dir.path() / "run").string();
  c.model = "fc7";
  EXPECT_THROW(train(c, [](const std::string&) {}), ShapeError) << "2 classes but fc7";
  c.model = "fc2";
  c.optimizer = "adagrad";
  EXPECT_THROW(train(c, [](const std::string&) {}), ConfigError);
  c.optimizer = "adam";
  c.schedule = "sometimes";
  EXPECT_THROW(train(c, [](const std::string&) {}), ConfigError);
}

}  // namespace
}  // namespace augflow::pipeline

namespace augflow::pipeline {
namespace {

/// The two-colour folder with a bad file, trained with a cosine schedule and EMA weights: what
/// an interrupted run must restore exactly (exclusions, the schedule's place, the EMA copy).
TrainConfig resumable_config(const test::TempDir& dir, int epochs) {
  write_colour_folder(dir, 12);
  dir.write("data/red/broken.png", {'n', 'o', 't', ' ', 'a', ' ', 'p', 'n', 'g'});
  TrainConfig c = colour_config(dir);
  c.epochs = epochs;
  c.schedule = "cosine";
  c.ema = 0.9;
  return c;
}

/// The runs in `a` and `b` ended in the same state, bit for bit: step, weights, optimizer state
/// and EMA weights.
void expect_same_final_state(const std::filesystem::path& a, const std::filesystem::path& b) {
  const auto last_a = model::load_checkpoint((a / "last.ckpt").string());
  const auto last_b = model::load_checkpoint((b / "last.ckpt").string());
  EXPECT_EQ(last_a.step, last_b.step);
  expect_same_tensors(last_a.params, last_b.params);
  expect_same_tensors(last_a.optimizer_state, last_b.optimizer_state);
  expect_same_tensors(model::load_checkpoint((a / "ema.ckpt").string()).params,
                      model::load_checkpoint((b / "ema.ckpt").string()).params);
}

TEST(Train, InterruptedAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  // A bad file too: the resumed run must exclude exactly what the interrupted one did; and EMA
  // weights, which must survive the interruption too.
  TrainConfig c = resumable_config(dir, 4);

  c.out = (dir.path() / "straight").string();
  const auto straight = train(c, [](const std::string&) {});
  EXPECT_FALSE(straight.interrupted);
  EXPECT_EQ(straight.skipped_files, 1u);

  c.out = (dir.path() / "interrupted").string();
  std::atomic<bool> stop{false};
  const auto first = train(
      c, [&](const std::string& line) { if (line.rfind("epoch 2/4", 0) == 0) stop = true; }, false, &stop);
  EXPECT_TRUE(first.interrupted);
  EXPECT_EQ(model::load_checkpoint(c.out + "/last.ckpt").epoch, 2);
  const auto resumed = train(c, [](const std::string&) {}, true);
  EXPECT_FALSE(resumed.interrupted);
  EXPECT_EQ(resumed.epochs_run, 4);
  EXPECT_EQ(resumed.best_val_accuracy, straight.best_val_accuracy);

  expect_same_final_state(dir.path() / "straight", dir.path() / "interrupted");
  const auto a = model::load_checkpoint((dir.path() / "straight" / "last.ckpt").string());
  const auto ema_a = model::load_checkpoint((dir.path() / "straight" / "ema.ckpt").string());
  bool differs_from_last = false;
  for (const auto& [name, tensor] : ema_a.params)
    differs_from_last |= std::memcmp(tensor.data(), a.params.at(name).data(), tensor.size() * sizeof(float)) != 0;
  EXPECT_TRUE(differs_from_last) << "the EMA weights are an average, not the last weights";
  EXPECT_EQ(resumed.best_ema_val_accuracy, straight.best_ema_val_accuracy);

  std::ifstream metrics(c.out + "/metrics.csv");
  std::string line;
  int rows = 0;
  std::getline(metrics, line);
  EXPECT_NE(line.find("ema_val_accuracy"), std::string::npos) << line;
  while (std::getline(metrics, line)) ++rows;
  EXPECT_EQ(rows, 4) << "the resumed run appends epochs 3 and 4";
}

// Bad files in both splits: each list says which data it is about, and a last line gives the
// total that summary.json's skipped_files holds, so the two counts add up for the reader.
TEST(Train, SkippedFilesNameTheirSplitAndTheTotal) {
  test::TempDir dir;
  write_colour_folder(dir, 6);
  const std::vector<std::uint8_t> junk{'n', 'o', 't', ' ', 'a', ' ', 'p', 'n', 'g'};
  dir.write("data/red/broken1.png", junk);
  dir.write("data/blue/broken2.png", junk);
  for (const char* name : {"red", "blue"}) std::filesystem::create_directories(dir.path() / "val" / name);
  for (const char* name : {"red/img0.png", "blue/img0.png"})
    std::filesystem::copy_file(dir.path() / "data" / name, dir.path() / "val" / name);
  dir.write("val/red/broken3.png", junk);
  TrainConfig c = colour_config(dir);
  c.val = (dir.path() / "val").string();
  c.epochs = 1;
  c.out = (dir.path() / "run").string();
  std::vector<std::string> lines;
  const auto result = train(c, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_EQ(result.skipped_files, 3u);
  auto find = [&](const std::string& prefix) {
    for (const auto& line : lines)
      if (line.rfind(prefix, 0) == 0) return line;
    return std::string();
  };
  EXPECT_NE(find("training data: 2 files skipped").find("broken1.png"), std::string::npos);
  EXPECT_NE(find("validation data: 1 file skipped").find("broken3.png"), std::string::npos);
  EXPECT_EQ(find("3 files skipped in all"), "3 files skipped in all (2 training, 1 validation)");
  std::ifstream summary(c.out + "/summary.json");
  EXPECT_EQ(nlohmann::json::parse(summary).at("skipped_files"), 3);
}

/// metrics.csv without its seconds and elapsed_seconds columns (the two that depend on the
/// clock; elapsed_seconds is the last).
std::vector<std::string> metrics_rows(const std::string& run) {
  std::ifstream in(run + "/metrics.csv");
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields;
    std::stringstream split(line);
    for (std::string field; std::getline(split, field, ',');) fields.push_back(field);
    if (!fields.empty()) fields.pop_back();                  // ...,elapsed_seconds
    if (fields.size() > 6) fields.erase(fields.begin() + 6);  // epoch,train_loss,...,lr,seconds
    std::string row;
    for (const auto& f : fields) row += f + ",";
    rows.push_back(row);
  }
  return rows;
}

// Ctrl-C mid-epoch: last.ckpt holds the weights after the batches done and where the epoch
// stands; --resume goes on from the next batch. Interrupted twice (in the first epoch, where the
// bad file is found, and in the second), the run ends with the bytes and the metrics of an
// uninterrupted one.
TEST(Train, InterruptedMidEpochResumesAtTheNextBatch) {
  test::TempDir dir;
  TrainConfig c = resumable_config(dir, 3);  // cosine: the rate depends on the batch's place in the epoch

  c.out = (dir.path() / "straight").string();
  const auto straight = train(c, [](const std::string&) {});
  ASSERT_EQ(straight.skipped_files, 1u);

  c.out = (dir.path() / "interrupted").string();
  std::vector<std::string> lines;
  auto log = [&](const std::string& line) { lines.push_back(line); };
  for (const auto& [epoch, batch] : {std::pair{1, 2}, std::pair{2, 3}}) {
    SCOPED_TRACE("interrupted in epoch " + std::to_string(epoch) + " after batch " + std::to_string(batch));
    std::atomic<bool> stop{false};
    const auto part = train(c, log, epoch > 1, &stop, [&](const TrainProgress& p) {
      if (p.epoch == epoch && p.batch == static_cast<std::size_t>(batch)) stop = true;
    });
    EXPECT_TRUE(part.interrupted);
    const auto ckpt = model::load_checkpoint(c.out + "/last.ckpt");
    EXPECT_EQ(ckpt.epoch, epoch - 1) << "whole epochs done";
    ASSERT_TRUE(ckpt.meta.contains("partial_epoch"));
    EXPECT_EQ(ckpt.meta.at("partial_epoch").at("batches"), batch);
    EXPECT_EQ(metrics_rows(c.out).size(), static_cast<std::size_t>(epoch)) << "a row per whole epoch only";
    EXPECT_NE(std::find_if(lines.begin(), lines.end(),
                           [&](const std::string& l) {
                             return l.find("interrupted during epoch " + std::to_string(epoch) + " after batch " +
                                           std::to_string(batch)) != std::string::npos;
                           }),
              lines.end());
  }
  const auto resumed = train(c, log, true);
  EXPECT_FALSE(resumed.interrupted);
  EXPECT_EQ(resumed.epochs_run, 3);
  EXPECT_EQ(resumed.best_val_accuracy, straight.best_val_accuracy);
  EXPECT_NE(std::find(lines.begin(), lines.end(), "resuming " + c.out + " in epoch 2 of 3, at batch 4"), lines.end());

  expect_same_final_state(dir.path() / "straight", dir.path() / "interrupted");
  EXPECT_FALSE(model::load_checkpoint(c.out + "/last.ckpt").meta.contains("partial_epoch"));
  EXPECT_EQ(metrics_rows(c.out), metrics_rows((dir.path() / "straight").string()))
      << "the same losses, accuracies and learning rates for every epoch, the interrupted ones included";
}

// --freeze 2 on conv-bn-relu-pool-fc: the conv's weights and the batch norm's parameters and
// running statistics end the run as initialised, bit for bit, although the regularizer would
// pull the conv's weights and training mode would move the statistics; the head learns.
TEST(Train, FreezeKeepsTheFirstLayersAndTrainsTheRest) {
  test::TempDir dir;
  write_colour_folder(dir, 6);
  TrainConfig c = colour_config(dir);
  c.model = "conv4k3p1-bn-relu-pool2-fc2";
  c.freeze = 2;
  c.epochs = 2;
  c.regularizer = "l2:0.01";
  c.ema = 0.5;
  c.out = (dir.path() / "run").string();
  std::vector<std::string> lines;
  train(c, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_NE(std::find(lines.begin(), lines.end(),
                      "frozen: layers 0-1 (conv4k3p1-bn) keep their weights and batch-norm statistics; training "
                      "layers 2-4 (relu-pool2-fc2)"),
            lines.end());

  model::Net initial(model::parse_model_spec(c.model, 2), {0, 3, 32, 32}, 2);
  initial.initialize(c.seed);
  model::Checkpoint start;
  model::store_net(initial, start);
  const auto last = model::load_checkpoint(c.out + "/last.ckpt");
  ASSERT_EQ(last.params.size(), start.params.size()) << "checkpoints store the frozen parameters too";
  for (const auto& [name, tensor] : start.params) {
    const auto& now = last.params.at(name);
    const bool same = std::memcmp(tensor.data(), now.data(), tensor.size() * sizeof(float)) == 0;
    if (name.rfind("0.", 0) == 0 || name.rfind("1.", 0) == 0) {
      EXPECT_TRUE(same) << name << " is frozen";
    } else {
      EXPECT_FALSE(same) << name << " is trained";
    }
  }
  expect_same_tensors(last.state, start.state);  // the only batch norm is frozen
  std::size_t ema_copies = 0;
  for (const auto& [name, tensor] : last.optimizer_state) {
    const std::string param = name.substr(name.find('/') + 1);  // "adam_m/4.fc.weight", "ema/4.fc.weight"
    EXPECT_TRUE(param.rfind("0.", 0) != 0 && param.rfind("1.", 0) != 0)
        << name << ": no optimizer state or EMA copy for a frozen parameter";
    ema_copies += name.rfind("ema/", 0) == 0;
  }
  EXPECT_EQ(ema_copies, 2u) << "the head's weight and bias";
  // config.json keeps the setting for --resume, and runs from before --freeze read back as 0.
  auto config = read_json(dir.path() / "run" / "config.json");
  EXPECT_EQ(config.at("freeze"), 2);
  EXPECT_EQ(train_config_from_json(config).freeze, 2);
  config.erase("freeze");
  EXPECT_EQ(train_config_from_json(config).freeze, 0);
}

TEST(Train, FreezeMustLeaveALayerToTrain) {
  test::TempDir dir;
  write_colour_folder(dir, 4);
  TrainConfig c = colour_config(dir);  // fc8-relu-drop0.3-fc2: 4 layers
  c.out = (dir.path() / "run").string();
  c.freeze = 4;
  test::expect_throws_with([&] { train(c, [](const std::string&) {}); },
                           "cannot freeze 4 layers of a model with 4 layers");
  c.freeze = -5;
  test::expect_throws_with([&] { train(c, [](const std::string&) {}); }, "--freeze -5: the model has only 4 layers");
  // A negative count keeps all but the last layers: -1 trains the head alone.
  c.freeze = -1;
  std::vector<std::string> lines;
  train(c, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_NE(lines.front().find("frozen: layers 0-2"), std::string::npos) << lines.front();
}

// With frozen layers (their parameters in no optimizer state and no EMA copy), an interrupted
// and resumed run still ends in the state of an uninterrupted one.
TEST(Train, FrozenRunInterruptedAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  TrainConfig c = resumable_config(dir, 3);
  c.model = "fc8-relu-fc8-relu-drop0.3-fc2";
  c.freeze = 2;
  c.out = (dir.path() / "straight").string();
  train(c, [](const std::string&) {});

  c.out = (dir.path() / "interrupted").string();
  std::atomic<bool> stop{false};
  const auto first = train(
      c, [](const std::string&) {}, false, &stop, [&](const TrainProgress& p) {
        if (p.epoch == 2 && p.batch == 2) stop = true;
      });
  ASSERT_TRUE(first.interrupted);
  const auto resumed = train(c, [](const std::string&) {}, true);
  EXPECT_EQ(resumed.epochs_run, 3);
  expect_same_final_state(dir.path() / "straight", dir.path() / "interrupted");
}

/// The fields of the last row of a run's metrics.csv, by column name.
std::map<std::string, std::string> last_metrics_row(const std::string& run) {
  std::ifstream in(run + "/metrics.csv");
  std::vector<std::string> names, values;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string>& into = names.empty() ? names : values;
    into.clear();
    std::stringstream split(line);
    for (std::string field; std::getline(split, field, ',');) into.push_back(field);
  }
  std::map<std::string, std::string> row;
  for (std::size_t i = 0; i < names.size() && i < values.size(); ++i) row[names[i]] = values[i];
  return row;
}

// --budget-epochs 2.5: the schedule (cosine) is laid over 2.5 epochs' steps; the run stops after
// exactly those steps, its last one at the schedule's end value (0), validates and checkpoints
// the half epoch, and says so in summary.json. Reproducible: 1 and 2 loader threads, and an
// interruption in the middle, end in the same bits.
TEST(Train, BudgetEpochsStopsMidEpochWithTheScheduleFinished) {
  test::TempDir dir;
  TrainConfig c = resumable_config(dir, 1);
  c.out = (dir.path() / "one-epoch").string();
  train(c, [](const std::string&) {});
  const auto steps_per_epoch = model::load_checkpoint(c.out + "/last.ckpt").step;
  ASSERT_GE(steps_per_epoch, 2);

  c.budget_epochs = 2.5;
  c.threads = 1;
  c.out = (dir.path() / "straight").string();
  std::vector<std::string> lines;
  const auto straight = train(c, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_TRUE(straight.budget_spent);
  EXPECT_FALSE(straight.stopped_early);
  EXPECT_EQ(straight.epochs_run, 3) << "the last half epoch counts";
  const auto last = model::load_checkpoint(c.out + "/last.ckpt");
  EXPECT_EQ(last.step, std::llround(2.5 * static_cast<double>(steps_per_epoch)));
  EXPECT_EQ(last_metrics_row(c.out).at("lr"), "0") << "the last step at cosine's end value";
  EXPECT_NE(std::find_if(lines.begin(), lines.end(),
                         [](const std::string& l) { return l.rfind("budget spent after", 0) == 0; }),
            lines.end());
  const auto summary = read_json(dir.path() / "straight" / "summary.json");
  EXPECT_EQ(summary.at("budget_epochs"), 2.5);
  EXPECT_TRUE(summary.at("budget_seconds").is_null());
  EXPECT_EQ(summary.at("budget_spent"), true);
  const auto& reached = summary.at("time_to_accuracy");
  ASSERT_EQ(reached.size(), 3u) << "a validation after each epoch and at the end of the budget";
  EXPECT_EQ(reached[0].at("epoch"), 1.0);
  EXPECT_NEAR(reached[2].at("epoch").get<double>(), static_cast<double>(last.step) / steps_per_epoch, 1e-12);
  EXPECT_EQ(reached[2].at("val_accuracy"), straight.final_val_accuracy);
  for (std::size_t i = 1; i < reached.size(); ++i)
    EXPECT_GE(reached[i].at("seconds").get<double>(), reached[i - 1].at("seconds").get<double>());
  EXPECT_GE(summary.at("elapsed_seconds").get<double>(), reached[2].at("seconds").get<double>());
  EXPECT_TRUE(summary.contains("train_seconds"));
  EXPECT_EQ(read_json(dir.path() / "straight" / "config.json").at("budget_epochs"), 2.5);

  c.threads = 2;
  c.out = (dir.path() / "two-threads").string();
  train(c, [](const std::string&) {});
  expect_same_final_state(dir.path() / "straight", dir.path() / "two-threads");

  c.out = (dir.path() / "interrupted").string();
  std::atomic<bool> stop{false};
  const auto part = train(c, [](const std::string&) {}, false, &stop, [&](const TrainProgress& p) {
    if (p.epoch == 2 && p.batch == 2) stop = true;
  });
  ASSERT_TRUE(part.interrupted);
  EXPECT_FALSE(part.budget_spent);
  const auto resumed = train(c, [](const std::string&) {}, true);
  EXPECT_TRUE(resumed.budget_spent);
  EXPECT_EQ(resumed.epochs_run, 3);
  expect_same_final_state(dir.path() / "straight", dir.path() / "interrupted");
  EXPECT_EQ(metrics_rows(c.out), metrics_rows((dir.path() / "straight").string()));
  EXPECT_EQ(read_json(dir.path() / "interrupted" / "summary.json").at("time_to_accuracy").size(), 3u)
      << "the accuracies reached before the interruption are kept";
}

// --budget 0.05 (3 seconds) with no epoch bound: the clock ends the run, with the schedule
// finished. Nothing here depends on how fast the machine is: a slow one trains fewer epochs.
TEST(Train, BudgetInMinutesStopsOnTimeWithTheScheduleFinished) {
  test::TempDir dir;
  write_colour_folder(dir, 6);
  TrainConfig c = colour_config(dir);
  c.budget_minutes = 0.05;
  c.epochs = 0;  // no bound: the clock alone ends the run
  c.schedule = "cosine:0.0001";
  c.warmup = 0.1;
  c.out = (dir.path() / "run").string();
  const auto s = train(c, [](const std::string&) {});
  EXPECT_TRUE(s.budget_spent);
  EXPECT_FALSE(s.stopped_early);
  EXPECT_GE(s.epochs_run, 1);
  EXPECT_EQ(last_metrics_row(c.out).at("lr"), "0.0001") << "the last step at the schedule's end value";
  const auto summary = read_json(dir.path() / "run" / "summary.json");
  EXPECT_DOUBLE_EQ(summary.at("budget_seconds").get<double>(), 3.0);
  EXPECT_TRUE(summary.at("budget_epochs").is_null());
  ASSERT_EQ(summary.at("time_to_accuracy").size(), static_cast<std::size_t>(s.epochs_run));
  // Generous: the final validation is estimated, and a loaded machine may run late by a step or
  // a validation, not by a minute.
  EXPECT_LT(summary.at("elapsed_seconds").get<double>(), 3.0 + 60.0);
  EXPECT_FALSE(last_metrics_row(c.out).at("elapsed_seconds").empty());

  // An epoch bound ends it sooner when the epochs are done first, again with the schedule done.
  c.epochs = 1;
  c.budget_minutes = 60;
  c.out = (dir.path() / "bounded").string();
  const auto bounded = train(c, [](const std::string&) {});
  EXPECT_TRUE(bounded.budget_spent);
  EXPECT_EQ(bounded.epochs_run, 1);
  EXPECT_EQ(last_metrics_row(c.out).at("lr"), "0.0001");
}

TEST(Train, BudgetAndWarmupSettingsRoundTripAndOldConfigsResume) {
  TrainConfig c;
  c.budget_minutes = 12.5;
  c.warmup = 0.05;
  c.label_smoothing = 0.1;
  const TrainConfig back = train_config_from_json(to_json(c));
  EXPECT_EQ(back.budget_minutes, 12.5);
  EXPECT_EQ(back.budget_epochs, 0.0);
  EXPECT_EQ(back.warmup, 0.05);
  EXPECT_EQ(back.label_smoothing, 0.1);
  c.budget_minutes = 0;
  c.budget_epochs = 7.5;
  EXPECT_EQ(train_config_from_json(to_json(c)).budget_epochs, 7.5);

  // A run folder of a version before these settings: config.json and last.ckpt without them.
  test::TempDir dir;
  TrainConfig r = resumable_config(dir, 2);
  r.out = (dir.path() / "straight").string();
  train(r, [](const std::string&) {});
  r.out = (dir.path() / "old").string();
  std::atomic<bool> stop{false};
  train(r, [&](const std::string& line) { if (line.rfind("epoch 1/2", 0) == 0) stop = true; }, false, &stop);
  auto config = read_json(dir.path() / "old" / "config.json");
  for (const char* key : {"budget_minutes", "budget_epochs", "warmup", "label_smoothing"}) config.erase(key);
  std::ofstream(dir.path() / "old" / "config.json") << config.dump(2);
  const TrainConfig old = train_config_from_json(config);
  EXPECT_EQ(old.budget_minutes, 0.0);
  EXPECT_EQ(old.warmup, 0.0);
  EXPECT_EQ(old.label_smoothing, 0.0);
  auto ckpt = model::load_checkpoint(r.out + "/last.ckpt");
  for (const char* key : {"elapsed_seconds", "time_to_accuracy", "budget_spent"}) ckpt.meta.erase(key);
  model::save_checkpoint(r.out + "/last.ckpt", ckpt);
  const auto resumed = train(old, [](const std::string&) {}, true);
  EXPECT_EQ(resumed.epochs_run, 2);
  expect_same_final_state(dir.path() / "straight", dir.path() / "old");
}

// Warm-up and label smoothing change the run (they are wired in); bad combinations are errors
// that say what to do.
TEST(Train, WarmupLabelSmoothingAndBudgetSettings) {
  test::TempDir dir;
  write_colour_folder(dir, 6);
  TrainConfig c = colour_config(dir);
  c.epochs = 1;
  auto weights = [&](const std::string& name) {
    c.out = (dir.path() / name).string();
    train(c, [](const std::string&) {});
    return model::load_checkpoint(c.out + "/last.ckpt").params;
  };
  const auto plain = weights("plain");
  c.warmup = 0.5;
  const auto warmed = weights("warmup");
  c.warmup = 0;
  c.label_smoothing = 0.1;
  const auto smoothed = weights("smoothed");
  const auto differ = [](const auto& a, const auto& b) {
    for (const auto& [name, t] : a)
      if (std::memcmp(t.data(), b.at(name).data(), t.size() * sizeof(float)) != 0) return true;
    return false;
  };
  EXPECT_TRUE(differ(plain, warmed));
  EXPECT_TRUE(differ(plain, smoothed));

  c.label_smoothing = 0;
  c.out = (dir.path() / "bad").string();
  const std::vector<std::pair<std::function<void(TrainConfig&)>, std::string>> bad_settings = {
      {[](TrainConfig& b) { b.budget_minutes = 1, b.budget_epochs = 2; }, "not both"},
      {[](TrainConfig& b) { b.warmup = 1; }, "--warmup"},
      {[](TrainConfig& b) { b.schedule = "onecycle", b.warmup = 0.1; }, "onecycle has its own warm-up"},
      {[](TrainConfig& b) { b.budget_minutes = 1, b.epochs = 0, b.schedule = "step:2:0.1"; }, "give --epochs N too"},
      {[](TrainConfig& b) { b.budget_epochs = 4, b.snapshots = 2; }, "--snapshots"},
      {[](TrainConfig& b) { b.label_smoothing = 1; }, "--label-smoothing"},
  };
  for (const auto& [change, needle] : bad_settings) {
    TrainConfig b = c;
    change(b);
    test::expect_throws_with([&] { train(b, [](const std::string&) {}); }, needle);
  }
}

// Validation with the centre and its mirror reports what augflow eval's flip view gives for the
// same checkpoint and data; with the centre only, what its center view gives; and "auto"
// follows the training spec's hflip.
TEST(Train, ValidationViewsAreEvalsViews) {
  test::TempDir dir;
  write_colour_folder(dir, 8);
  TrainConfig c = colour_config(dir);
  c.val = c.train;  // eval can then read the validation data as a folder
  c.epochs = 1;
  const auto quiet = [](const std::string&) {};
  int run = 0;
  auto val_loss_of = [&](const std::string& views, const std::string& eval_views) {
    c.val_views = views;
    c.out = (dir.path() / ("run" + std::to_string(++run))).string();
    train(c, quiet);
    EvalConfig e;
    e.data = c.val;
    e.views = eval_views;
    e.members = {c.out + "/last.ckpt"};
    const EvalResult eval = evaluate(e, quiet);
    const auto summary = read_json(c.out + "/summary.json");
    EXPECT_DOUBLE_EQ(summary.at("final_val_accuracy").get<double>(), eval.metrics.top1) << views;
    std::ifstream metrics(c.out + "/metrics.csv");
    std::string header, row;
    std::getline(metrics, header);
    std::getline(metrics, row);
    std::vector<std::string> fields;
    std::stringstream cells(row);
    for (std::string f; std::getline(cells, f, ',');) fields.push_back(f);
    EXPECT_NEAR(std::stod(fields.at(3)), eval.metrics.nll, 1e-5) << views << " (val_loss in " << header << ")";
    EXPECT_EQ(read_json(c.out + "/config.json").at("val_views"), views);
    return std::stod(fields.at(3));
  };
  const double center = val_loss_of("center", "center");
  const double flip = val_loss_of("flip", "flip");
  EXPECT_NE(center, flip) << "the mirror must change what is averaged";
  EXPECT_EQ(val_loss_of("auto", "flip"), flip) << "the training spec flips, so auto is flip";
  c.aug = "pad_crop(0,32) | normalize(none)";
  val_loss_of("auto", "center");  // no hflip in training, so auto is the centre only

  c.out = (dir.path() / "bad").string();
  c.val_views = "tencrop";
  test::expect_throws_with([&] { train(c, quiet); }, "--val-views must be auto, center or flip");
}

TEST(Train, ResumeWithoutACheckpointIsAClearError) {
  test::TempDir dir;
  write_colour_folder(dir, 4);
  TrainConfig c;
  c.train = (dir.path() / "data").string();
  c.aug = "pad_crop(0,32) | normalize(none)";
  c.model = "fc2";
  c.out = (dir.path() / "never_ran").string();
  EXPECT_THROW(train(c, [](const std::string&) {}, true), IoError);
}

}  // namespace
}  // namespace augflow::pipeline
