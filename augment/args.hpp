// Typed parameters of a spec step, e.g. scale_crop(min=256, max=480, size=224).
//
// Each registered transform declares its parameters (name, kind, default, help) once; the
// parser, the printer, the JSON form and --help all read that declaration, so a parameter
// cannot be parsed but not printed, or documented but not accepted.
//
// API: public, part of augflow::augment; installed as <augflow/augment/args.hpp>.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "augflow/common/format.hpp"

namespace augflow::augment {

enum class ValueKind {
  number,   ///< 0.5
  integer,  ///< 224
  range,    ///< 0.08:1 (a single number x is accepted where the declaration says how to widen it)
  word,     ///< imagenet, reflect (one of ParamSpec::choices)
  list,     ///< [224,256,384]
};

struct Value {
  ValueKind kind = ValueKind::number;
  double lo = 0.0;  ///< number, integer, range low end
  double hi = 0.0;  ///< range high end (== lo for number and integer)
  std::string word;
  std::vector<double> list;

  static Value number(double x) { return {ValueKind::number, x, x, {}, {}}; }
  static Value integer(long x) {
    return {ValueKind::integer, static_cast<double>(x), static_cast<double>(x), {}, {}};
  }
  static Value range(double a, double b) { return {ValueKind::range, a, b, {}, {}}; }
  static Value of_word(std::string w) { return {ValueKind::word, 0, 0, std::move(w), {}}; }
  static Value of_list(std::vector<double> xs) { return {ValueKind::list, 0, 0, {}, std::move(xs)}; }
  bool operator==(const Value&) const = default;
};

/// How a single number given for a range parameter becomes a range.
enum class RangeFromNumber {
  none,          ///< not allowed
  symmetric,     ///< x -> -x:x (degrees, translation)
  around_one,    ///< x -> max(0, 1-x):1+x (jitter factors)
  exact,         ///< x -> x:x
};

struct ParamSpec {
  std::string name;
  ValueKind kind;
  Value default_value;
  std::string help;
  std::vector<std::string> choices = {};  ///< for word parameters
  RangeFromNumber widen = RangeFromNumber::none;
};

/// The resolved parameters of one step: every declared parameter has a value.
class Args {
 public:
  Args() = default;
  Args(std::string name, std::map<std::string, Value> values)
      : name_(std::move(name)), values_(std::move(values)) {}

  const std::string& name() const { return name_; }
  const std::map<std::string, Value>& values() const { return values_; }

  double number(const std::string& key) const;
  int integer(const std::string& key) const;
  std::pair<double, double> range(const std::string& key) const;
  const std::string& word(const std::string& key) const;
  const std::vector<double>& list(const std::string& key) const;
  bool operator==(const Args&) const = default;

 private:
  const Value& at(const std::string& key) const;
  std::string name_;
  std::map<std::string, Value> values_;
};

using augflow::format_number;  // shortest text that reads back to the same double
/// Canonical text of a value: "0.5", "224", "0.08:1", "imagenet", "[224,256]".
std::string format_value(const Value& value);

}  // namespace augflow::augment
