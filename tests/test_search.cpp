// Hyperparameter search: the space (parsing, log-uniform sampling, grid, zoom, borders).
#include <algorithm>
#include <cmath>
#include <set>

#include <gtest/gtest.h>

#include "common/error.hpp"
#include "model/search_space.hpp"
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
