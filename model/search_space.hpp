// Hyperparameter search spaces: the text `augflow search --space` takes, and the three ways a
// search draws trials from it (random samples, a grid, and the zoom of coarse-to-fine search).
// The lecture's advice is built in: sample scale parameters (learning rate, regularization) in
// log space, prefer random to grid search (Bergstra & Bengio 2012: with a few important
// parameters, n random trials try n distinct values of each, a grid only n^(1/d)), zoom in
// after a coarse stage, and beware of a best value on the border of its range.
//
// Grammar: parameters separated by spaces (or ';' or ','), each NAME=DIST(ARGS):
//   log(LO,HI)        log-uniform: ln x uniform in [ln LO, ln HI];  0 < LO < HI
//   uniform(LO,HI)    uniform in [LO, HI];  LO < HI
//   int(LO,HI)        a whole number from LO to HI, each equally likely;  LO <= HI
//   choice(A,B,...)   one of the values (numbers, or words such as adam or cosine:0.01)
// NAME starts with a letter and holds letters, digits and '_'. Example:
//   lr=log(1e-6,1e-3) reg=log(1e-5,1e5) dropout=uniform(0.2,0.7) hidden=choice(50,100,200)
// A text that does not parse is a SpecError naming the token and its position.
//
// Randomness: the value of parameter p in trial (seed, stage, index) is drawn from
// Rng({seed, stage, index}, stream p + 1): a pure function of that key, so trials can run in any
// order and on any thread, and adding a parameter leaves the others' values unchanged.
//
// API: public, part of augflow::model; installed as <augflow/model/search_space.hpp>.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "augflow/common/rng.hpp"

namespace augflow::model {

enum class Distribution { log_uniform, uniform, integer, choice };

/// One parameter of a search space and the range it is drawn from.
struct ParamRange {
  std::string name;
  Distribution kind = Distribution::uniform;
  double lo = 0;                     ///< log_uniform, uniform, integer: the bounds (inclusive)
  double hi = 0;
  std::vector<std::string> choices;  ///< choice: the values, in canonical text
  bool operator==(const ParamRange&) const = default;
  /// True for the distributions with a range (everything but choice).
  bool ranged() const { return kind != Distribution::choice; }
};

struct SearchSpace {
  std::vector<ParamRange> params;  ///< in the order written
  bool operator==(const SearchSpace&) const = default;
  /// The parameter called `name`, or nullptr.
  const ParamRange* find(std::string_view name) const;
};

/// One drawn value: `text` is what a placeholder is replaced with (the shortest form that reads
/// back to `number`), `number` is NaN for a word.
struct ParamValue {
  double number = 0;
  std::string text;
  bool numeric() const;
  bool operator==(const ParamValue&) const = default;
};

/// A trial's values, one per parameter of the space, in the space's order.
using Assignment = std::vector<ParamValue>;

/// Parses the grammar above. Throws SpecError ("search space: ...") naming the token, its
/// position (with a caret under the text) and the accepted forms.
SearchSpace parse_search_space(std::string_view text);
/// Canonical text, e.g. "lr=log(1e-06,0.001) hidden=choice(50,100,200)":
/// parse_search_space(print_search_space(s)) == s.
std::string print_search_space(const SearchSpace& space);
/// One parameter's canonical text, "lr=log(1e-06,0.001)".
std::string print_param_range(const ParamRange& range);
/// For people: three significant digits, "lr=log(5.62e-05,0.001)" (the canonical text keeps
/// every digit, which a zoomed range has many of).
std::string describe_param_range(const ParamRange& range);
/// {"lr": {"distribution": "log", "lo": 1e-06, "hi": 0.001}, "hidden": {"distribution":
/// "choice", "values": [50, 100, 200]}, ...}
nlohmann::json search_space_to_json(const SearchSpace& space);

/// The value of `p` as JSON: a number, or a string for a word.
nlohmann::json param_value_to_json(const ParamValue& p);

/// One random trial: each parameter drawn independently (see the header comment).
Assignment sample_trial(const SearchSpace& space, SampleKey key);

/// Grid search with about `trials` points: choice parameters contribute each of their values;
/// the other parameters share the rest, n = max(1, round((trials / choices)^(1/d))) points each
/// (d = their number), evenly spaced from LO to HI inclusive (in log space for log; whole
/// numbers, without repeats, for int; the middle when n = 1). Trials enumerate the Cartesian
/// product, the first parameter varying slowest.
std::vector<Assignment> grid_trials(const SearchSpace& space, int trials);

/// Coarse to fine: the next stage's space from the best trials of this one (`top`, at least
/// one). For each ranged parameter, in its scale (log10 for log): the span [a, b] of the top
/// values, widened on both sides by max(25% of b - a, 5% of HI - LO), clipped to [LO, HI]
/// (a zoom never leaves the range it zooms into: a best value on its border is reported by
/// border_warnings instead); int bounds are rounded outwards. A choice keeps the values the top
/// trials use, in their original order. Every top value lies inside the new space.
SearchSpace zoom_space(const SearchSpace& space, const std::vector<Assignment>& top);

/// How many of `finished` successful trials zoom_space looks at: the best 10%, at least 3 (or
/// all when fewer).
std::size_t zoom_top_count(std::size_t finished);

/// One warning per ranged parameter whose `best` value lies within `tolerance` (a fraction of
/// the range, in log space for log) of LO or HI: "best lr (0.00095) is at the upper border of
/// lr=log(1e-06,0.001); widen the range" (numbers as describe_param_range writes them).
std::vector<std::string> border_warnings(const SearchSpace& space, const Assignment& best, double tolerance = 0.1);

/// The position of `value` in `range` from 0 (LO) to 1 (HI), in log space for log; 0.5 for a
/// single-valued range. Only for ranged parameters.
double range_position(const ParamRange& range, double value);

}  // namespace augflow::model
