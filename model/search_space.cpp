#include "model/search_space.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/format.hpp"
#include "common/spec_message.hpp"

namespace augflow::model {
namespace {

constexpr std::string_view kAccepted =
    "NAME=log(LO,HI), NAME=uniform(LO,HI), NAME=int(LO,HI), NAME=choice(A,B,...), separated by spaces, "
    "e.g. 'lr=log(1e-6,1e-3) reg=log(1e-5,1e5) hidden=choice(50,100,200)'";

struct KindName {
  std::string_view name;
  Distribution kind;
};
constexpr KindName kKinds[] = {{"log", Distribution::log_uniform},
                               {"uniform", Distribution::uniform},
                               {"int", Distribution::integer},
                               {"choice", Distribution::choice}};

std::string_view kind_name(Distribution kind) {
  for (const auto& k : kKinds)
    if (k.kind == kind) return k.name;
  return "?";
}

std::optional<double> to_number(std::string_view text) {
  double x = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), x);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(x)) return std::nullopt;
  return x;
}

/// A choice value's canonical text: numbers in their shortest form ("1e-3" -> "0.001").
std::string canonical_value(std::string_view text) {
  const auto x = to_number(text);
  return x ? format_number(*x) : std::string(text);
}

bool is_separator(char c) { return std::isspace(static_cast<unsigned char>(c)) || c == ';' || c == ','; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
/// Characters of an argument: anything but the punctuation of the grammar.
bool is_value_char(char c) {
  return !std::isspace(static_cast<unsigned char>(c)) && c != ',' && c != '(' && c != ')' && c != ';' && c != '=';
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  SearchSpace parse() {
    SearchSpace space;
    skip_separators();
    while (pos_ < text_.size()) {
      space.params.push_back(param(space));
      const std::size_t after = pos_;
      skip_separators();
      if (pos_ < text_.size() && pos_ == after) fail(pos_, here(), "expected a space, ';' or ',' between parameters");
    }
    if (space.params.empty()) fail(0, "", "the search space is empty");
    return space;
  }

 private:
  std::string_view text_;
  std::size_t pos_ = 0;

  [[noreturn]] void fail(std::size_t position, const std::string& token, const std::string& what) const {
    throw_spec_error("search space", text_, position, token, what, kAccepted);
  }
  std::string here() const {
    std::size_t end = pos_;
    while (end < text_.size() && is_value_char(text_[end])) ++end;
    return std::string(text_.substr(pos_, std::max<std::size_t>(1, end - pos_)));
  }
  void skip_separators() {
    while (pos_ < text_.size() && is_separator(text_[pos_])) ++pos_;
  }
  void skip_spaces() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  void expect(char c, const std::string& what) {
    skip_spaces();
    if (pos_ >= text_.size() || text_[pos_] != c)
      fail(pos_, pos_ < text_.size() ? here() : "", "expected " + what);
    ++pos_;
  }

  ParamRange param(const SearchSpace& space) {
    ParamRange range;
    const std::size_t name_pos = pos_;
    while (pos_ < text_.size() && is_name_char(text_[pos_])) ++pos_;
    range.name = std::string(text_.substr(name_pos, pos_ - name_pos));
    if (range.name.empty() || !std::isalpha(static_cast<unsigned char>(range.name[0]))) {
      pos_ = name_pos;
      fail(name_pos, here(), "expected a parameter name (a letter, then letters, digits or '_')");
    }
    if (space.find(range.name)) fail(name_pos, range.name, "the parameter '" + range.name + "' is given twice");
    expect('=', "'=' after the parameter name '" + range.name + "'");
    skip_spaces();
    const std::size_t kind_pos = pos_;
    while (pos_ < text_.size() && is_name_char(text_[pos_])) ++pos_;
    const std::string kind(text_.substr(kind_pos, pos_ - kind_pos));
    const auto* info = std::find_if(std::begin(kKinds), std::end(kKinds), [&](const auto& k) { return k.name == kind; });
    if (info == std::end(kKinds)) {
      pos_ = kind_pos;
      fail(kind_pos, kind.empty() ? here() : kind, "unknown distribution '" + (kind.empty() ? here() : kind) +
                                                       "' for " + range.name + " (log, uniform, int or choice)");
    }
    range.kind = info->kind;
    expect('(', "'(' after " + kind);
    struct Arg {
      std::string text;
      std::size_t position;
    };
    std::vector<Arg> args;
    for (;;) {
      skip_spaces();
      const std::size_t arg_pos = pos_;
      while (pos_ < text_.size() && is_value_char(text_[pos_])) ++pos_;
      if (pos_ == arg_pos) fail(pos_, pos_ < text_.size() ? std::string(1, text_[pos_]) : "", "expected a value");
      args.push_back({std::string(text_.substr(arg_pos, pos_ - arg_pos)), arg_pos});
      skip_spaces();
      if (pos_ < text_.size() && text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      expect(')', "',' or ')' in " + kind + "(...)");
      break;
    }
    if (range.kind == Distribution::choice) {
      for (const auto& arg : args) {
        std::string value = canonical_value(arg.text);
        if (std::find(range.choices.begin(), range.choices.end(), value) != range.choices.end())
          fail(arg.position, arg.text, "the value '" + arg.text + "' is listed twice in " + range.name + "=choice");
        range.choices.push_back(std::move(value));
      }
      return range;
    }
    const std::string form = range.name + "=" + kind + "(LO,HI)";
    if (args.size() != 2)
      fail(args.front().position, args.front().text,
           form + " takes two numbers, got " + std::to_string(args.size()) + " value(s)");
    double bounds[2];
    for (int i = 0; i < 2; ++i) {
      const auto x = to_number(args[i].text);
      if (!x) fail(args[i].position, args[i].text, "'" + args[i].text + "' is not a number (in " + form + ")");
      if (range.kind == Distribution::integer && *x != std::floor(*x))
        fail(args[i].position, args[i].text, "'" + args[i].text + "' is not a whole number (in " + form + ")");
      bounds[i] = *x;
    }
    range.lo = bounds[0];
    range.hi = bounds[1];
    if (range.kind == Distribution::log_uniform && !(range.lo > 0))
      fail(args[0].position, args[0].text, form + " needs 0 < LO: a log range cannot reach 0 or below");
    if (range.kind == Distribution::integer ? range.lo > range.hi : !(range.lo < range.hi))
      fail(args[0].position, args[0].text,
           form + " needs LO " + (range.kind == Distribution::integer ? "<=" : "<") + " HI, got " + args[0].text +
               " and " + args[1].text + (range.lo > range.hi ? " (swapped?)" : ""));
    return range;
  }
};

/// The parameter's scale: log10 for log, the value itself otherwise.
double to_scale(const ParamRange& r, double x) { return r.kind == Distribution::log_uniform ? std::log10(x) : x; }
double from_scale(const ParamRange& r, double s) { return r.kind == Distribution::log_uniform ? std::pow(10.0, s) : s; }

std::string short_number(double x) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", x);
  return text;
}

ParamValue number_value(double x) { return {x, format_number(x)}; }

ParamValue choice_value(const std::string& text) {
  const auto x = to_number(text);
  return {x ? *x : std::numeric_limits<double>::quiet_NaN(), text};
}

/// The n grid points of a ranged parameter (see grid_trials).
std::vector<ParamValue> grid_points(const ParamRange& r, int n) {
  std::vector<ParamValue> points;
  const double a = to_scale(r, r.lo), b = to_scale(r, r.hi);
  for (int i = 0; i < n; ++i) {
    double x = from_scale(r, n == 1 ? 0.5 * (a + b) : a + (b - a) * i / (n - 1));
    if (i == 0 && n > 1) x = r.lo;  // exactly the bounds, not 10^log10(x)
    if (i == n - 1 && n > 1) x = r.hi;
    if (r.kind == Distribution::integer) x = std::round(x);
    if (points.empty() || points.back().number != x) points.push_back(number_value(x));
  }
  return points;
}

}  // namespace

bool ParamValue::numeric() const { return !std::isnan(number); }

const ParamRange* SearchSpace::find(std::string_view name) const {
  for (const auto& p : params)
    if (p.name == name) return &p;
  return nullptr;
}

SearchSpace parse_search_space(std::string_view text) { return Parser(text).parse(); }

std::string print_param_range(const ParamRange& r) {
  std::string text = r.name + "=" + std::string(kind_name(r.kind)) + "(";
  if (r.kind == Distribution::choice) {
    for (std::size_t i = 0; i < r.choices.size(); ++i) text += (i ? "," : "") + r.choices[i];
  } else {
    text += format_number(r.lo) + "," + format_number(r.hi);
  }
  return text + ")";
}

std::string describe_param_range(const ParamRange& r) {
  if (r.kind == Distribution::choice) return print_param_range(r);
  return r.name + "=" + std::string(kind_name(r.kind)) + "(" + short_number(r.lo) + "," + short_number(r.hi) + ")";
}

std::string print_search_space(const SearchSpace& space) {
  std::string text;
  for (const auto& p : space.params) text += (text.empty() ? "" : " ") + print_param_range(p);
  return text;
}

nlohmann::json param_value_to_json(const ParamValue& p) {
  return p.numeric() ? nlohmann::json(p.number) : nlohmann::json(p.text);
}

nlohmann::json search_space_to_json(const SearchSpace& space) {
  nlohmann::json json = nlohmann::json::object();
  for (const auto& p : space.params) {
    nlohmann::json entry = {{"distribution", kind_name(p.kind)}};
    if (p.kind == Distribution::choice) {
      entry["values"] = nlohmann::json::array();
      for (const auto& c : p.choices) entry["values"].push_back(param_value_to_json(choice_value(c)));
    } else {
      entry["lo"] = p.lo;
      entry["hi"] = p.hi;
    }
    json[p.name] = std::move(entry);
  }
  return json;
}

Assignment sample_trial(const SearchSpace& space, SampleKey key) {
  Assignment values;
  for (std::size_t i = 0; i < space.params.size(); ++i) {
    const ParamRange& r = space.params[i];
    Rng rng(key, i + 1);
    switch (r.kind) {
      case Distribution::log_uniform:
        // exp of a uniform log, clamped: rounding must not step outside the range.
        values.push_back(number_value(std::clamp(std::exp(rng.uniform(std::log(r.lo), std::log(r.hi))), r.lo, r.hi)));
        break;
      case Distribution::uniform:
        values.push_back(number_value(rng.uniform(r.lo, r.hi)));
        break;
      case Distribution::integer:
        values.push_back(number_value(static_cast<double>(
            rng.uniform_int(static_cast<std::int64_t>(r.lo), static_cast<std::int64_t>(r.hi)))));
        break;
      case Distribution::choice:
        values.push_back(choice_value(
            r.choices[static_cast<std::size_t>(rng.uniform_int(0, static_cast<std::int64_t>(r.choices.size()) - 1))]));
        break;
    }
  }
  return values;
}

std::vector<Assignment> grid_trials(const SearchSpace& space, int trials) {
  double choice_points = 1;
  int ranged = 0;
  for (const auto& p : space.params) {
    if (p.ranged())
      ++ranged;
    else
      choice_points *= static_cast<double>(p.choices.size());
  }
  const int per =
      ranged ? std::max(1, static_cast<int>(std::lround(std::pow(std::max(1.0, trials / choice_points), 1.0 / ranged))))
             : 1;
  std::vector<std::vector<ParamValue>> axes;
  for (const auto& p : space.params) {
    if (p.ranged()) {
      axes.push_back(grid_points(p, per));
    } else {
      axes.emplace_back();
      for (const auto& c : p.choices) axes.back().push_back(choice_value(c));
    }
  }
  std::vector<Assignment> grid(1);
  for (const auto& axis : axes) {
    std::vector<Assignment> next;
    for (const auto& partial : grid)
      for (const auto& value : axis) {
        next.push_back(partial);
        next.back().push_back(value);
      }
    grid = std::move(next);
  }
  return grid;
}

std::size_t zoom_top_count(std::size_t finished) {
  const auto tenth = static_cast<std::size_t>(std::ceil(0.1 * static_cast<double>(finished)));
  return std::min(finished, std::max<std::size_t>(3, tenth));
}

SearchSpace zoom_space(const SearchSpace& space, const std::vector<Assignment>& top) {
  if (top.empty()) throw Error("zoom_space: no trial to zoom in on");
  SearchSpace next = space;
  for (std::size_t i = 0; i < space.params.size(); ++i) {
    const ParamRange& r = space.params[i];
    ParamRange& z = next.params[i];
    if (r.kind == Distribution::choice) {
      z.choices.clear();
      for (const auto& c : r.choices)
        if (std::any_of(top.begin(), top.end(), [&](const Assignment& a) { return a.at(i).text == c; }))
          z.choices.push_back(c);
      continue;
    }
    double a = std::numeric_limits<double>::infinity(), b = -a;
    for (const auto& trial : top) {
      const double s = to_scale(r, trial.at(i).number);
      a = std::min(a, s);
      b = std::max(b, s);
    }
    const double lo = to_scale(r, r.lo), hi = to_scale(r, r.hi);
    const double pad = std::max(0.25 * (b - a), 0.05 * (hi - lo));
    z.lo = a - pad <= lo ? r.lo : from_scale(r, a - pad);
    z.hi = b + pad >= hi ? r.hi : from_scale(r, b + pad);
    if (r.kind == Distribution::integer) {
      z.lo = std::floor(z.lo);
      z.hi = std::ceil(z.hi);
    }
    // 10^(log10 x) may come back a hair away from x: the top values must stay inside.
    for (const auto& trial : top) {
      z.lo = std::min(z.lo, trial.at(i).number);
      z.hi = std::max(z.hi, trial.at(i).number);
    }
  }
  return next;
}

double range_position(const ParamRange& r, double value) {
  const double lo = to_scale(r, r.lo), hi = to_scale(r, r.hi);
  return hi > lo ? (to_scale(r, value) - lo) / (hi - lo) : 0.5;
}

std::vector<std::string> border_warnings(const SearchSpace& space, const Assignment& best, double tolerance) {
  std::vector<std::string> warnings;
  for (std::size_t i = 0; i < space.params.size(); ++i) {
    const ParamRange& r = space.params[i];
    if (!r.ranged() || !(r.hi > r.lo)) continue;
    const double position = range_position(r, best.at(i).number);
    const char* border = position < tolerance ? "lower" : position > 1 - tolerance ? "upper" : nullptr;
    if (border)
      warnings.push_back("best " + r.name + " (" + short_number(best.at(i).number) + ") is at the " + border +
                         " border of " + describe_param_range(r) + "; widen the range");
  }
  return warnings;
}

}  // namespace augflow::model
