// Hyperparameter search: the space (parsing, log-uniform sampling, grid, zoom, borders) and the
// search itself on a tiny generated data set (results folder, parallel trials, resume).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "common/error.hpp"
#include "model/checkpoint.hpp"
#include "model/search_space.hpp"
#include "pipeline/search.hpp"
#include "tests/fixtures.hpp"

namespace augflow::model {
namespace {

TEST(SearchSpace, ParsesAndPrintsCanonically) {
  const auto space = parse_search_space(
      "lr=log(1e-6,1e-3) reg=log(1e-5,1e5);dropout=uniform(0.2, 0.7), hidden=choice(50,100,200) "
      "depth=int(1,3) optimizer=choice(sgd,adam)");
  ASSERT_EQ(space.params.size(), 6u);
  EXPECT_EQ(space.params[0].kind, Distribution::log_uniform);
  EXPECT_EQ(space.params[0].lo, 1e-6);
  EXPECT_EQ(space.params[1].hi, 1e5);
  EXPECT_EQ(space.params[2].kind, Distribution::uniform);
  EXPECT_EQ(space.params[3].choices, (std::vector<std::string>{"50", "100", "200"}));
  EXPECT_EQ(space.params[4].kind, Distribution::integer);
  const std::string printed = print_search_space(space);
  EXPECT_EQ(printed,
            "lr=log(1e-06,0.001) reg=log(1e-05,1e+05) dropout=uniform(0.2,0.7) hidden=choice(50,100,200) "
            "depth=int(1,3) optimizer=choice(sgd,adam)");
  EXPECT_EQ(parse_search_space(printed), space);
}

TEST(SearchSpace, ParseErrorsNameTheToken) {
  struct Case {
    const char* text;
    const char* token;
    const char* says;
  };
  const Case cases[] = {
      {"lr=logg(1e-6,1e-3)", "logg", "unknown distribution"},
      {"lr=log(0,1e-3)", "0", "0 < LO"},
      {"lr=log(1e-3,1e-6)", "1e-3", "swapped"},
      {"lr=uniform(0.1,abc)", "abc", "not a number"},
      {"lr=log(1e-6)", "1e-6", "two numbers"},
      {"lr=log(1e-6,1e-3 reg=log(1,2)", "reg", "expected ',' or ')'"},
      {"lr=log(1e-6,1e-3) lr=log(1,2)", "lr", "given twice"},
      {"hidden=choice(50,50)", "50", "listed twice"},
      {"depth=int(1.5,3)", "1.5", "whole number"},
      {"3lr=log(1,2)", "3lr", "parameter name"},
      {"lr log(1,2)", "log", "expected '='"},
  };
  for (const auto& c : cases) {
    try {
      parse_search_space(c.text);
      ADD_FAILURE() << c.text << ": no error";
    } catch (const SpecError& e) {
      EXPECT_EQ(e.token(), c.token) << c.text << "\n" << e.what();
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("search space:"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(parse_search_space("  "), SpecError);
}

TEST(SearchSpace, LogUniformSamplesAreUniformInLogSpace) {
  const auto space = parse_search_space("lr=log(1e-6,1e-3) reg=log(1e-5,1e5)");
  const int n = 20000;
  std::vector<double> u;  // position of log10(lr) in [-6, -3], scaled to [0, 1]
  int below_1e5 = 0;
  for (int i = 0; i < n; ++i) {
    const auto a = sample_trial(space, {7, 1, static_cast<std::uint64_t>(i)});
    ASSERT_GE(a[0].number, 1e-6);
    ASSERT_LE(a[0].number, 1e-3);
    ASSERT_GE(a[1].number, 1e-5);
    ASSERT_LE(a[1].number, 1e5);
    u.push_back((std::log10(a[0].number) + 6) / 3);
    below_1e5 += a[0].number < 1e-5;
  }
  double mean = 0;
  for (double x : u) mean += x;
  mean /= n;
  // A uniform variable: mean 1/2 (standard error 0.29/sqrt(20000) = 0.002), quantiles q at q.
  EXPECT_NEAR(mean, 0.5, 0.01);
  std::sort(u.begin(), u.end());
  for (double q : {0.1, 0.25, 0.5, 0.75, 0.9})
    EXPECT_NEAR(u[static_cast<std::size_t>(q * n)], q, 0.015) << "quantile " << q;
  // The first decade of three holds a third of the samples (uniform sampling would put 0.9%
  // there: that is why scale parameters are sampled in log space).
  EXPECT_NEAR(static_cast<double>(below_1e5) / n, 1.0 / 3, 0.015);
}

TEST(SearchSpace, SamplesDependOnlyOnTheirKey) {
  const auto space = parse_search_space("lr=log(1e-6,1e-3) hidden=choice(50,100,200)");
  EXPECT_EQ(sample_trial(space, {1, 1, 5}), sample_trial(space, {1, 1, 5}));
  EXPECT_NE(sample_trial(space, {1, 1, 5}), sample_trial(space, {1, 1, 6}));
  EXPECT_NE(sample_trial(space, {1, 1, 5}), sample_trial(space, {1, 2, 5}));
  // Adding a parameter leaves the others' values unchanged.
  const auto wider = parse_search_space("lr=log(1e-6,1e-3) hidden=choice(50,100,200) reg=log(1,2)");
  const auto a = sample_trial(space, {1, 1, 5}), b = sample_trial(wider, {1, 1, 5});
  EXPECT_EQ(a[0], b[0]);
  EXPECT_EQ(a[1], b[1]);
}

TEST(SearchSpace, GridCoversItsPoints) {
  const auto space = parse_search_space("lr=log(1e-4,1e-1) dropout=uniform(0,0.5) hidden=choice(50,100)");
  const auto grid = grid_trials(space, 18);  // 2 choices x 3 x 3
  ASSERT_EQ(grid.size(), 18u);
  std::set<std::vector<std::string>> seen;
  for (const auto& a : grid) seen.insert({a[0].text, a[1].text, a[2].text});
  EXPECT_EQ(seen.size(), 18u) << "every combination exactly once";
  std::set<double> lrs, dropouts;
  for (const auto& a : grid) lrs.insert(a[0].number), dropouts.insert(a[1].number);
  ASSERT_EQ(lrs.size(), 3u);
  EXPECT_EQ(*lrs.begin(), 1e-4);
  EXPECT_NEAR(*std::next(lrs.begin()), std::pow(10.0, -2.5), 1e-12) << "evenly spaced in log space";
  EXPECT_EQ(*lrs.rbegin(), 1e-1);
  EXPECT_EQ(dropouts, (std::set<double>{0, 0.25, 0.5}));
  // About the number of trials asked for; ints do not repeat.
  EXPECT_EQ(grid_trials(parse_search_space("lr=log(1e-6,1e-3) reg=log(1e-5,1e5)"), 100).size(), 100u);
  EXPECT_EQ(grid_trials(parse_search_space("depth=int(1,3)"), 10).size(), 3u);
}

/// A made-up score: best near lr = 3e-4, reg = 1e-2 (in log space), hidden 100.
double score(const Assignment& a) {
  return -std::abs(std::log10(a[0].number / 3e-4)) - 0.3 * std::abs(std::log10(a[1].number / 1e-2)) -
         (a[2].text == "100" ? 0 : 0.5);
}

TEST(SearchSpace, ZoomKeepsTheBestTrialsInsideTheNewRange) {
  const auto space = parse_search_space("lr=log(1e-6,1e-3) reg=log(1e-5,1e5) hidden=choice(50,100,200)");
  std::vector<Assignment> trials;
  for (int i = 0; i < 100; ++i) trials.push_back(sample_trial(space, {3, 1, static_cast<std::uint64_t>(i)}));
  std::sort(trials.begin(), trials.end(), [](const auto& a, const auto& b) { return score(a) > score(b); });
  const std::size_t top = zoom_top_count(trials.size());
  EXPECT_EQ(top, 10u);
  const std::vector<Assignment> best(trials.begin(), trials.begin() + top);
  const auto zoomed = zoom_space(space, best);
  for (std::size_t p = 0; p < 2; ++p) {
    const auto& r = zoomed.params[p];
    EXPECT_GE(r.lo, space.params[p].lo);
    EXPECT_LE(r.hi, space.params[p].hi);
    EXPECT_LT(std::log10(r.hi / r.lo), std::log10(space.params[p].hi / space.params[p].lo)) << "narrower: " << r.name;
    for (const auto& a : best) {
      EXPECT_GE(a[p].number, r.lo) << r.name;
      EXPECT_LE(a[p].number, r.hi) << r.name;
    }
  }
  EXPECT_GE(zoomed.params[0].lo, 1e-5) << print_search_space(zoomed);
  for (const auto& a : best)
    EXPECT_NE(std::find(zoomed.params[2].choices.begin(), zoomed.params[2].choices.end(), a[2].text),
              zoomed.params[2].choices.end());

  // A single best trial on the border: the range shrinks but keeps it (and stays inside).
  const Assignment edge = {{1e-3, "0.001"}, {1e-5, "1e-05"}, {std::nan(""), "200"}};
  const auto z = zoom_space(space, {edge});
  EXPECT_EQ(z.params[0].hi, 1e-3);
  EXPECT_EQ(z.params[1].lo, 1e-5);
  EXPECT_NEAR(std::log10(z.params[0].hi / z.params[0].lo), 0.15, 1e-9) << "5% of 3 decades";
  EXPECT_EQ(z.params[2].choices, std::vector<std::string>{"200"});
  EXPECT_EQ(zoom_top_count(5), 3u);
  EXPECT_EQ(zoom_top_count(2), 2u);
}

TEST(SearchSpace, BorderWarnings) {
  const auto space = parse_search_space("lr=log(1e-6,1e-3) dropout=uniform(0.2,0.7)");
  auto warnings = [&](double lr, double dropout) {
    return border_warnings(space, {{lr, ""}, {dropout, ""}});
  };
  EXPECT_TRUE(warnings(1e-4, 0.45).empty());
  const auto upper = warnings(6e-4, 0.45);  // log position 0.93
  ASSERT_EQ(upper.size(), 1u);
  EXPECT_EQ(upper[0], "best lr (0.0006) is at the upper border of lr=log(1e-06,0.001); widen the range");
  EXPECT_TRUE(warnings(4e-4, 0.45).empty()) << "log position 0.87: inside (it would be 0.4 on a linear axis)";
  const auto lower = warnings(1.5e-6, 0.22);
  ASSERT_EQ(lower.size(), 2u);
  EXPECT_NE(lower[0].find("lower border"), std::string::npos);
  EXPECT_NE(lower[1].find("best dropout (0.22) is at the lower border"), std::string::npos) << lower[1];
}

}  // namespace
}  // namespace augflow::model

namespace augflow::pipeline {
namespace {

using test::read_json;

TEST(Search, TrialConfigMapsParametersAndPlaceholders) {
  TrainConfig base;
  base.model = "fc{hidden}-relu-drop{dropout}-fc10";
  base.regularizer = "elastic:1:0.5";
  const auto space = model::parse_search_space(
      "lr=log(1e-6,1e-3) reg=log(1e-5,1e5) dropout=uniform(0.2,0.7) hidden=choice(50,100) optimizer=choice(sgd,adam)");
  const model::Assignment params = {{2e-4, "0.0002"}, {0.5, "0.5"}, {0.25, "0.25"}, {100, "100"}, {std::nan(""), "sgd"}};
  const TrainConfig c = trial_config(base, space, params);
  EXPECT_EQ(c.lr, 2e-4);
  EXPECT_EQ(c.regularizer, "elastic:0.5:0.5") << "the kind and beta of --reg, the sampled strength";
  EXPECT_EQ(c.model, "fc100-relu-drop0.25-fc10");
  EXPECT_EQ(c.optimizer, "sgd");
  base.regularizer = "none";
  EXPECT_EQ(trial_config(base, space, params).regularizer, "l2:0.5");

  test::expect_throws_with(
      [&] {
        base.model = "fc{hidden}-relu-drop{dropout}-fc{classes}";
        trial_config(base, space, params);
      },
      "--model has the placeholder {classes}, but --space has no parameter 'classes'");
  test::expect_throws_with(
      [&] {
        base.model = "fc{hidden}-relu-fc10";
        trial_config(base, space, params);
      },
      "the parameter 'dropout' is used nowhere");
  base.model = "fc{hidden}-relu-drop{dropout}-fc10";
  const auto words = model::parse_search_space("lr=choice(fast,slow) dropout=uniform(0.2,0.7) hidden=choice(50,100)");
  EXPECT_THROW(trial_config(base, words, {{std::nan(""), "fast"}, {0.3, "0.3"}, {50, "50"}}), SpecError);
}

TEST(Search, TrialLineHasTheLecturesForm) {
  const auto space = model::parse_search_space("lr=log(1e-6,1e-3) reg=log(1e-5,1e5) hidden=choice(50,100)");
  TrialResult t;
  t.val_accuracy = 0.412;
  t.params = {{1.405206e-04, "0.0001405206"}, {4.793564e-01, "0.4793564"}, {50, "50"}};
  EXPECT_EQ(trial_line(space, t, 1, 100), "val_acc: 0.412000, lr: 1.405206e-04, reg: 4.793564e-01, hidden: 50, (1 / 100)");
  t.ok = false;
  t.error = "training diverged at epoch 1, batch 3: the loss is nan. Try a smaller --lr";
  EXPECT_EQ(trial_line(space, t, 2, 100),
            "val_acc: failed, lr: 1.405206e-04, reg: 4.793564e-01, hidden: 50, (2 / 100): training diverged at "
            "epoch 1, batch 3: the loss is nan");
}

/// A search over write_colour_folder's data: 4 one-epoch trials of a tiny net.
SearchConfig tiny_search(const test::TempDir& dir, const std::string& out) {
  SearchConfig s;
  s.base.train = (dir.path() / "data").string();
  s.base.val_split = 0.25;
  s.base.model = "conv3k3p1-relu-pool4-fc{hidden}-relu-fc2";  // a conv too: its sums must not depend on threads
  s.base.aug = "pad_crop(0,32) | hflip | normalize(none)";
  s.base.batch = 4;
  s.base.epochs = 1;
  s.base.seed = 11;
  s.base.threads = 2;
  s.space = "lr=log(1e-3,1e-1) reg=log(1e-5,1e-1) hidden=choice(4,8)";
  s.trials = 4;
  s.keep = 2;
  s.out = (dir.path() / out).string();
  return s;
}

/// (stage, trial) -> (val accuracy, seed, params) of a results.json.
std::map<std::pair<int, int>, nlohmann::json> by_trial(const nlohmann::json& results) {
  std::map<std::pair<int, int>, nlohmann::json> trials;
  for (const auto& t : results["trials"])
    trials[{t["stage"].get<int>(), t["trial"].get<int>()}] = {t["val_accuracy"], t["seed"], t["params"],
                                                             t["final_val_accuracy"]};
  return trials;
}

TEST(Search, WritesTheResultsFolder) {
  test::TempDir dir;
  test::write_colour_folder(dir, 8);
  const SearchConfig s = tiny_search(dir, "search");
  std::vector<std::string> lines;
  const auto result = search(s, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_FALSE(result.interrupted);
  ASSERT_EQ(result.trials.size(), 4u);
  int trial_lines = 0;
  for (const auto& line : lines) trial_lines += line.rfind("val_acc: ", 0) == 0;
  EXPECT_EQ(trial_lines, 4);
  EXPECT_NE(std::find(lines.begin(), lines.end(), "stage 1/1: 4 trials of 1 epoch over lr=log(0.001,0.1) "
                                                  "reg=log(1e-05,0.1) hidden=choice(4,8)"),
            lines.end());

  const auto out = dir.path() / "search";
  const auto results = read_json(out / "results.json");
  for (const char* key : {"version", "settings", "stages", "trials", "best", "complete"})
    EXPECT_TRUE(results.contains(key)) << key;
  EXPECT_TRUE(results["complete"].get<bool>());
  ASSERT_EQ(results["trials"].size(), 4u);
  double previous = 2;
  int checkpoints = 0;
  std::set<std::uint64_t> seeds;
  for (const auto& t : results["trials"]) {
    for (const char* key : {"val_accuracy", "params", "seed", "stage", "epochs", "run_dir", "checkpoint", "status"})
      EXPECT_TRUE(t.contains(key)) << key;
    EXPECT_LE(t["val_accuracy"].get<double>(), previous) << "sorted by validation accuracy";
    previous = t["val_accuracy"];
    seeds.insert(t["seed"].get<std::uint64_t>());
    EXPECT_TRUE(std::filesystem::exists(out / t["run_dir"].get<std::string>() / "metrics.csv"));
    const bool kept = !t["checkpoint"].is_null();
    checkpoints += kept;
    EXPECT_EQ(std::filesystem::exists(out / t["run_dir"].get<std::string>() / "best.ckpt"), kept);
    EXPECT_EQ(std::filesystem::exists(out / t["run_dir"].get<std::string>() / "last.ckpt"), kept);
  }
  EXPECT_EQ(seeds.size(), 4u) << "every trial has its own seed";
  EXPECT_EQ(checkpoints, 2) << "--keep 2";
  EXPECT_EQ(results["best"], results["trials"][0]);
  EXPECT_EQ(results["stages"][0]["ranges"]["lr"]["distribution"], "log");
  // Every trial is validated on the same samples: the split comes from the search seed.
  const auto config = read_json(out / results["trials"][0]["run_dir"].get<std::string>() / "config.json");
  EXPECT_EQ(config["split_seed"], 11);
  EXPECT_EQ(config["model"], "conv3k3p1-relu-pool4-fc" + std::to_string(results["trials"][0]["params"]["hidden"].get<int>()) + "-relu-fc2")
      << "the placeholder is filled";

  std::ifstream csv(out / "results.csv");
  std::string header, row;
  std::getline(csv, header);
  EXPECT_EQ(header, "rank,stage,trial,status,val_accuracy,final_val_accuracy,best_epoch,epochs,seed,lr,reg,hidden,"
                    "seconds,run_dir,checkpoint");
  int rows = 0;
  while (std::getline(csv, row)) ++rows;
  EXPECT_EQ(rows, 4);
  const cv::Mat scatter = cv::imread((out / "scatter.png").string());
  EXPECT_FALSE(scatter.empty());
}

// --parallel 1 trains each trial with 2 threads, its loader a flow graph; --parallel 2 gives
// each trial one thread, which loads inline (LoaderOptions::inline_loading). Same results.
TEST(Search, ParallelTrialsGiveTheSameResults) {
  test::TempDir dir;
  test::write_colour_folder(dir, 8);
  SearchConfig s = tiny_search(dir, "one");
  s.parallel = 1;
  search(s, [](const std::string&) {});
  s = tiny_search(dir, "two");
  s.parallel = 2;
  search(s, [](const std::string&) {});
  const auto one = read_json(dir.path() / "one" / "results.json");
  const auto two = read_json(dir.path() / "two" / "results.json");
  EXPECT_EQ(by_trial(one), by_trial(two));
  // Bit for bit: the weights of the best trial.
  const auto run = one["trials"][0]["run_dir"].get<std::string>();
  const auto a = model::load_checkpoint((dir.path() / "one" / run / "best.ckpt").string());
  const auto b = model::load_checkpoint((dir.path() / "two" / run / "best.ckpt").string());
  ASSERT_EQ(a.params.size(), b.params.size());
  for (const auto& [name, tensor] : a.params)
    EXPECT_EQ(0, std::memcmp(tensor.data(), b.params.at(name).data(), tensor.size() * sizeof(float))) << name;
}

// The trials of a search over an image folder share one decoded-image cache: same results as
// trials that decode every file themselves (PNG: the whole-image path gives the same bytes).
TEST(Search, SharedImageCacheGivesTheSameResults) {
  test::TempDir dir;
  test::write_colour_folder(dir, 8);
  SearchConfig s = tiny_search(dir, "uncached");
  s.base.cache_mb = 0;
  search(s, [](const std::string&) {});
  s = tiny_search(dir, "cached");
  s.base.cache_mb = 16;
  s.parallel = 1;  // one trial at a time: no two trials decode the same file at once, so the counts are exact
  std::string cache_line;
  search(s, [&](const std::string& line) {
    if (line.rfind("decoded-image cache:", 0) == 0) cache_line = line;
  });
  // 16 images (12 train + 4 val), each decoded once for 4 trials: the other reads hit memory.
  EXPECT_EQ(cache_line.rfind("decoded-image cache: 16 images decoded, 48 reads served", 0), 0u) << cache_line;
  EXPECT_EQ(by_trial(read_json(dir.path() / "uncached" / "results.json")),
            by_trial(read_json(dir.path() / "cached" / "results.json")));
  s = tiny_search(dir, "cached_parallel");
  s.base.cache_mb = 16;
  s.parallel = 2;
  search(s, [](const std::string&) {});
  EXPECT_EQ(by_trial(read_json(dir.path() / "uncached" / "results.json")),
            by_trial(read_json(dir.path() / "cached_parallel" / "results.json")));
}

TEST(Search, ResumeSkipsFinishedTrials) {
  test::TempDir dir;
  test::write_colour_folder(dir, 8);
  SearchConfig s = tiny_search(dir, "straight");
  search(s, [](const std::string&) {});

  s = tiny_search(dir, "interrupted");
  std::atomic<bool> stop{false};
  int finished = 0;
  const auto first = search(
      s, [&](const std::string& line) { if (line.rfind("val_acc: ", 0) == 0 && ++finished == 2) stop = true; }, &stop);
  EXPECT_TRUE(first.interrupted);
  auto saved = read_json(dir.path() / "interrupted" / "results.json");
  EXPECT_EQ(saved["trials"].size(), 2u) << "persisted after every trial";
  EXPECT_FALSE(saved["complete"].get<bool>());

  std::vector<std::string> lines;
  const auto resumed = search(s, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_FALSE(resumed.interrupted);
  int trial_lines = 0;
  for (const auto& line : lines) trial_lines += line.rfind("val_acc: ", 0) == 0;
  EXPECT_EQ(trial_lines, 2) << "only the two unfinished trials ran";
  EXPECT_EQ(lines.front(), "resuming " + s.out + ": 2 trials finished before");
  EXPECT_EQ(by_trial(read_json(dir.path() / "interrupted" / "results.json")),
            by_trial(read_json(dir.path() / "straight" / "results.json")));

  // The same folder with other settings is another search: an error, not a mix.
  s.space = "lr=log(1e-3,1e-2) reg=log(1e-5,1e-1) hidden=choice(4,8)";
  test::expect_throws_with([&] { search(s, [](const std::string&) {}); }, "settings that differ: space");
}

TEST(Search, StagesZoomInAndTrainLonger) {
  test::TempDir dir;
  test::write_colour_folder(dir, 8);
  SearchConfig s = tiny_search(dir, "stages");
  s.stages = 2;
  s.space = "lr=log(1e-3,1e-1) hidden=choice(4,8)";
  s.base.model = "fc{hidden}-relu-fc2";
  std::vector<std::string> lines;
  search(s, [&](const std::string& line) { lines.push_back(line); });
  const auto results = read_json(dir.path() / "stages" / "results.json");
  ASSERT_EQ(results["stages"].size(), 2u);
  EXPECT_EQ(results["stages"][1]["epochs"], 2);
  EXPECT_EQ(results["stages"][1]["trials"], 2);
  const auto& coarse = results["stages"][0]["ranges"]["lr"];
  const auto& fine = results["stages"][1]["ranges"]["lr"];
  EXPECT_GE(fine["lo"].get<double>(), coarse["lo"].get<double>());
  EXPECT_LE(fine["hi"].get<double>(), coarse["hi"].get<double>());
  EXPECT_LT(fine["hi"].get<double>() / fine["lo"].get<double>(), coarse["hi"].get<double>() / coarse["lo"].get<double>());
  int stage2 = 0;
  for (const auto& t : results["trials"]) stage2 += t["stage"] == 2 && t["epochs"] == 2;
  EXPECT_EQ(stage2, 2);
  EXPECT_TRUE(std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
    return l.rfind("stage 2/2: zoomed in around the best 3 of stage 1; 2 trials of 2 epochs over lr=log(", 0) == 0;
  }));
}

TEST(Search, BadSettingsFailBeforeTraining) {
  test::TempDir dir;
  test::write_colour_folder(dir, 4);
  SearchConfig s = tiny_search(dir, "bad");
  s.space = "lr=log(1e-3,1e-1) hidden=uniform(4,8)";  // fc5.3 is not a model
  s.base.model = "fc{hidden}-relu-fc2";
  test::expect_throws_with([&] { search(s, [](const std::string&) {}); }, "stage 1, trial 0 (lr=");
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "bad" / "stage1")) << "nothing trained";
  s.space = "lr=log(1e-3,1e-1";
  EXPECT_THROW(search(s, [](const std::string&) {}), SpecError);
  s.space = "lr=log(1e-3,1e-1) hidden=choice(4,8)";
  s.base.optimizer = "adagrad";
  EXPECT_THROW(search(s, [](const std::string&) {}), ConfigError);
}

TEST(Search, CommandLineRunsResumesAndRejectsABadSpace) {
  test::TempDir dir;
  test::write_colour_folder(dir, 6);
  const std::string common = "search --train " + (dir.path() / "data").string() +
                             " --val-split 0.25 --model 'fc{hidden}-relu-fc2' --aug 'pad_crop(0,32) | normalize(none)' "
                             "--batch 4 --trials 2 --epochs 1 --out " + (dir.path() / "s").string();
  const auto bad = test::run(common + " --space 'lr=logg(1e-3,1e-1) hidden=choice(4,8)'");
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("unknown distribution 'logg'"), std::string::npos) << bad.output;

  const auto first = test::run(common + " --space 'lr=log(1e-3,1e-1) hidden=choice(4,8)'");
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_NE(first.output.find(", (2 / 2)"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("2 trials in "), std::string::npos) << first.output;
  const auto again = test::run("search --resume " + (dir.path() / "s").string() + " --parallel 2");
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("resuming"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("0 trials in "), std::string::npos) << again.output;
  EXPECT_EQ(read_json(dir.path() / "s" / "results.json")["settings"]["parallel"], 2) << "--parallel may change";
}

}  // namespace
}  // namespace augflow::pipeline
