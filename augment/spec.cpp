#include "augment/spec.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>

#include <nlohmann/json.hpp>

#include "augment/registry.hpp"
#include "common/error.hpp"
#include "common/spec_message.hpp"

namespace augflow::augment {
namespace {

struct RawArg {
  std::string name;  // empty for positional
  Value value;
  std::size_t position = 0;
  std::string token;
};

struct RawStep {
  std::string name;
  std::size_t position = 0;
  std::vector<RawArg> args;
};

std::string accepted_steps() {
  std::string names;
  for (const auto& step : step_registry()) names += (names.empty() ? "" : ", ") + step.name;
  return names;
}

std::string signature(const StepInfo& step) {
  std::string text = step.name + "(";
  for (std::size_t i = 0; i < step.params.size(); ++i)
    text += (i ? "," : "") + step.params[i].name + "=" + format_value(step.params[i].default_value);
  return text + ")";
}

[[noreturn]] void fail(std::string_view spec, std::size_t position, const std::string& token,
                       const std::string& what, const std::string& accepted) {
  throw_spec_error("augmentation spec", spec, position, token, what, accepted);
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  std::vector<RawStep> parse() {
    std::vector<RawStep> steps;
    skip_space();
    if (at_end()) fail(text_, 0, "", "empty spec", "steps joined by '|', e.g. hflip | scale_crop(256,480,224)");
    while (true) {
      steps.push_back(parse_step());
      skip_space();
      if (at_end()) break;
      if (peek() != '|') fail(text_, pos_, here(), "expected '|' between steps", "");
      ++pos_;
    }
    return steps;
  }

 private:
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return at_end() ? '\0' : text_[pos_]; }
  /// The character at the cursor, as a token for error messages ("end of spec" past the end).
  std::string here() const { return at_end() ? std::string("end of spec") : std::string(1, text_[pos_]); }
  void skip_space() {
    while (!at_end() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  static bool is_word_char(char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
  }

  std::string word() {
    const std::size_t start = pos_;
    while (!at_end() && is_word_char(text_[pos_])) ++pos_;
    return std::string(text_.substr(start, pos_ - start));
  }

  RawStep parse_step() {
    skip_space();
    RawStep step;
    step.position = pos_;
    if (!std::isalpha(static_cast<unsigned char>(peek())))
      fail(text_, pos_, here(), "expected a step name", accepted_steps());
    step.name = word();
    skip_space();
    if (peek() != '(') return step;
    ++pos_;
    skip_space();
    if (peek() == ')') {
      ++pos_;
      return step;
    }
    while (true) {
      step.args.push_back(parse_arg());
      skip_space();
      if (peek() == ')') {
        ++pos_;
        return step;
      }
      if (peek() != ',')
        fail(text_, pos_, here(), "expected ',' or ')' in the arguments of " + step.name, "");
      ++pos_;
    }
  }

  RawArg parse_arg() {
    skip_space();
    RawArg arg;
    arg.position = pos_;
    if (std::isalpha(static_cast<unsigned char>(peek()))) {
      const std::size_t start = pos_;
      std::string name = word();
      skip_space();
      if (peek() == '=') {
        ++pos_;
        arg.name = std::move(name);
        skip_space();
      } else {
        pos_ = start;  // a bare word value, e.g. normalize(imagenet)
      }
    }
    const std::size_t value_start = pos_;
    arg.value = parse_value();
    arg.token = std::string(text_.substr(arg.position, pos_ - arg.position));
    (void)value_start;
    return arg;
  }

  double number() {
    skip_space();
    const char* begin = text_.data() + pos_;
    const char* end = text_.data() + text_.size();
    if (begin != end && *begin == '+') ++begin;
    double x = 0;
    const auto [ptr, ec] = std::from_chars(begin, end, x);
    if (ec != std::errc() || !std::isfinite(x)) {
      std::size_t stop = pos_;
      while (stop < text_.size() && !std::strchr(",)|]:", text_[stop])) ++stop;
      fail(text_, pos_, std::string(text_.substr(pos_, stop - pos_)), "expected a number", "");
    }
    pos_ = static_cast<std::size_t>(ptr - text_.data());
    return x;
  }

  Value parse_value() {
    skip_space();
    if (peek() == '[') {
      ++pos_;
      std::vector<double> xs;
      skip_space();
      while (peek() != ']') {
        xs.push_back(number());
        skip_space();
        if (peek() == ',') {
          ++pos_;
        } else if (peek() != ']') {
          fail(text_, pos_, here(), "expected ',' or ']' in a list", "");
        }
      }
      ++pos_;
      return Value::of_list(std::move(xs));
    }
    if (std::isalpha(static_cast<unsigned char>(peek()))) return Value::of_word(word());
    const double lo = number();
    skip_space();
    if (peek() == ':') {
      ++pos_;
      return Value::range(lo, number());
    }
    return Value::number(lo);
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

std::string kind_name(ValueKind kind) {
  switch (kind) {
    case ValueKind::number: return "a number";
    case ValueKind::integer: return "a whole number";
    case ValueKind::range: return "a range lo:hi";
    case ValueKind::word: return "a word";
    case ValueKind::list: return "a list [a,b,...]";
  }
  return {};
}

/// Converts what was written into the declared kind, or explains why it cannot be.
std::optional<Value> coerce(const ParamSpec& param, const Value& given) {
  switch (param.kind) {
    case ValueKind::number:
      if (given.kind == ValueKind::number) return given;
      return std::nullopt;
    case ValueKind::integer:
      if (given.kind == ValueKind::number && given.lo == std::floor(given.lo) &&
          std::abs(given.lo) < 1e9)
        return Value::integer(static_cast<long>(given.lo));
      return std::nullopt;
    case ValueKind::range:
      if (given.kind == ValueKind::range) return given;
      if (given.kind == ValueKind::list && given.list.size() == 2)
        return Value::range(given.list[0], given.list[1]);
      if (given.kind == ValueKind::number) {
        const double x = given.lo;
        switch (param.widen) {
          case RangeFromNumber::none: return std::nullopt;
          case RangeFromNumber::symmetric: return Value::range(-std::abs(x), std::abs(x));
          case RangeFromNumber::around_one: return Value::range(std::max(0.0, 1.0 - x), 1.0 + x);
          case RangeFromNumber::exact: return Value::range(x, x);
        }
      }
      return std::nullopt;
    case ValueKind::word:
      if (given.kind != ValueKind::word) return std::nullopt;
      for (const auto& choice : param.choices)
        if (choice == given.word) return given;
      return std::nullopt;
    case ValueKind::list:
      if (given.kind == ValueKind::list) return given;
      if (given.kind == ValueKind::number) return Value::of_list({given.lo});
      return std::nullopt;
  }
  return std::nullopt;
}

std::string param_help(const ParamSpec& param) {
  std::string text = param.name + " (" + kind_name(param.kind);
  if (!param.choices.empty()) {
    text += ":";
    for (const auto& c : param.choices) text += " " + c;
  }
  return text + ")";
}

Args resolve(std::string_view spec, const RawStep& raw, const StepInfo& step) {
  std::map<std::string, Value> values;
  std::map<std::string, bool> given;
  for (const auto& param : step.params) values[param.name] = param.default_value;
  bool named_seen = false;
  std::size_t index = 0;
  for (const auto& arg : raw.args) {
    const ParamSpec* param = nullptr;
    if (arg.name.empty()) {
      if (named_seen)
        fail(spec, arg.position, arg.token, "positional argument after a named one in " + step.name,
             signature(step));
      if (index >= step.params.size())
        fail(spec, arg.position, arg.token, "too many arguments for " + step.name, signature(step));
      param = &step.params[index++];
    } else {
      named_seen = true;
      for (const auto& p : step.params)
        if (p.name == arg.name) param = &p;
      if (!param)
        fail(spec, arg.position, arg.token, step.name + " has no parameter '" + arg.name + "'",
             signature(step));
    }
    if (given[param->name])
      fail(spec, arg.position, arg.token, step.name + ": " + param->name + " given twice", signature(step));
    given[param->name] = true;
    const auto value = coerce(*param, arg.value);
    if (!value)
      fail(spec, arg.position, arg.token,
           step.name + ": " + param->name + " must be " + kind_name(param->kind),
           param_help(*param) + "; " + signature(step));
    values[param->name] = *value;
  }
  return Args(step.name, std::move(values));
}

struct ResolvedStep {
  const StepInfo* info;
  Args args;
  std::size_t position;
  std::string token;
};

std::vector<ResolvedStep> resolve_all(std::string_view spec, const std::vector<RawStep>& raw) {
  std::vector<ResolvedStep> steps;
  for (const auto& r : raw) {
    const StepInfo* info = find_step(r.name);
    if (!info) fail(spec, r.position, r.name, "unknown step '" + r.name + "'", accepted_steps());
    steps.push_back({info, resolve(spec, r, *info), r.position, r.name});
  }
  return steps;
}

/// Configuration errors of a step (ConfigError from its constructor) become SpecErrors at its
/// position, so the user sees where in the spec the bad value is.
template <class Build>
auto build_at(std::string_view spec, const ResolvedStep& step, Build build) {
  try {
    return build();
  } catch (const ConfigError& e) {
    fail(spec, step.position, step.token, e.what(), signature(*step.info));
  }
}

Pipeline build_pipeline(std::string_view spec, const std::vector<ResolvedStep>& steps) {
  std::vector<TransformPtr> transforms;
  Normalize normalize;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const auto& step = steps[i];
    switch (step.info->kind) {
      case StepKind::train:
        transforms.push_back(build_at(spec, step, [&] { return step.info->make(step.args); }));
        break;
      case StepKind::normalize:
        if (i + 1 != steps.size())
          fail(spec, step.position, step.token, "normalize must be the last step", "");
        normalize = build_at(spec, step, [&] { return Normalize(step.args); });
        break;
      case StepKind::view:
        fail(spec, step.position, step.token,
             step.info->name + " is a test-time view, not a training transform (use it with --views)",
             "training steps: hflip, vflip, scale_crop, resized_crop, center_crop, pad_crop, jitter, lighting, "
             "affine, erase, normalize");
    }
  }
  return Pipeline(std::move(transforms), std::move(normalize));
}

std::vector<RawStep> raw_from_json(const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("steps") || !json["steps"].is_array())
    throw SpecError("augmentation spec JSON: expected {\"version\": 1, \"steps\": [...]}");
  if (json.contains("version") && json["version"] != kSpecVersion)
    throw SpecError("augmentation spec JSON: version " + json["version"].dump() +
                    " is not supported (this augflow reads version " + std::to_string(kSpecVersion) + ")");
  std::vector<RawStep> steps;
  for (const auto& item : json["steps"]) {
    if (!item.is_object() || !item.contains("name") || !item["name"].is_string())
      throw SpecError("augmentation spec JSON: each step needs a \"name\": " + item.dump());
    RawStep step;
    step.name = item["name"].get<std::string>();
    for (const auto& [key, v] : item.items()) {
      if (key == "name") continue;
      RawArg arg;
      arg.name = key;
      arg.token = key + "=" + v.dump();
      if (v.is_number()) {
        arg.value = Value::number(v.get<double>());
      } else if (v.is_string()) {
        arg.value = Value::of_word(v.get<std::string>());
      } else if (v.is_array()) {
        std::vector<double> xs;
        for (const auto& x : v) {
          if (!x.is_number()) throw SpecError("augmentation spec JSON: " + arg.token + " must hold numbers");
          xs.push_back(x.get<double>());
        }
        arg.value = Value::of_list(std::move(xs));
      } else {
        throw SpecError("augmentation spec JSON: unsupported value " + arg.token);
      }
      step.args.push_back(std::move(arg));
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

nlohmann::json value_to_json(const Value& value) {
  switch (value.kind) {
    case ValueKind::number:
    case ValueKind::integer: return value.lo;
    case ValueKind::range: return nlohmann::json::array({value.lo, value.hi});
    case ValueKind::word: return value.word;
    case ValueKind::list: return value.list;
  }
  return nullptr;
}

nlohmann::json step_to_json(const Args& args) {
  nlohmann::json step = {{"name", args.name()}};
  for (const auto& [key, value] : args.values()) step[key] = value_to_json(value);
  return step;
}

}  // namespace

std::string print_step(const Args& args) {
  const StepInfo* info = find_step(args.name());
  std::string text = args.name();
  if (!info || info->params.empty()) return text;
  text += "(";
  bool first = true;
  for (const auto& param : info->params) {
    const Value& value = args.values().at(param.name);
    // An empty list means "not given" (normalize's mean/std under a named preset).
    if (value.kind == ValueKind::list && value.list.empty()) continue;
    text += (first ? "" : ",") + param.name + "=" + format_value(value);
    first = false;
  }
  return text + ")";
}

Pipeline parse_pipeline(std::string_view spec) {
  const auto raw = Parser(spec).parse();
  return build_pipeline(spec, resolve_all(spec, raw));
}

Pipeline pipeline_from_json(const nlohmann::json& json) {
  const auto raw = raw_from_json(json);
  return build_pipeline({}, resolve_all({}, raw));
}

Pipeline parse_pipeline_any(std::string_view spec) {
  const auto first = spec.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && spec[first] == '{') {
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(spec);
    } catch (const nlohmann::json::exception& e) {
      // parse_error, and out_of_range for a number that overflows a double (1e999).
      throw SpecError(std::string("augmentation spec JSON does not parse: ") + e.what());
    }
    return pipeline_from_json(json);
  }
  return parse_pipeline(spec);
}

ViewPipeline parse_views(std::string_view spec) {
  const auto raw = Parser(spec).parse();
  const auto steps = resolve_all(spec, raw);
  if (steps.front().info->kind != StepKind::view)
    fail(spec, steps.front().position, steps.front().token, "a view spec starts with a view",
         "center(resize,size), flip(resize,size), tencrop(resize,size), multiscale(scales,size)");
  std::optional<Views> views;
  views.emplace(build_at(spec, steps.front(), [&] { return Views(steps.front().args); }));
  Normalize normalize;
  for (std::size_t i = 1; i < steps.size(); ++i) {
    const auto& step = steps[i];
    if (step.info->kind != StepKind::normalize || i + 1 != steps.size())
      fail(spec, step.position, step.token, "a view may only be followed by normalize", "");
    normalize = build_at(spec, step, [&] { return Normalize(step.args); });
  }
  return ViewPipeline{std::move(*views), std::move(normalize)};
}

std::string Pipeline::print() const {
  std::string text;
  for (const auto& t : transforms_) text += (text.empty() ? "" : " | ") + print_step(t->args());
  const std::string norm = print_step(normalize_.args());
  return text.empty() ? norm : text + " | " + norm;
}

nlohmann::json Pipeline::to_json() const {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& t : transforms_) steps.push_back(step_to_json(t->args()));
  steps.push_back(step_to_json(normalize_.args()));
  return {{"version", kSpecVersion}, {"steps", steps}};
}

std::string ViewPipeline::print() const {
  return print_step(views.args()) + " | " + print_step(normalize.args());
}

std::string spec_help() {
  std::string text;
  for (const auto& step : step_registry()) {
    text += "  " + signature(step) + "\n      " + step.help + "\n";
    for (const auto& p : step.params) {
      text += "      " + p.name + ": " + p.help;
      if (!p.choices.empty()) {
        text += " (one of:";
        for (const auto& c : p.choices) text += " " + c;
        text += ")";
      }
      text += "\n";
    }
  }
  return text;
}

}  // namespace augflow::augment
