#include "model/regularizer.hpp"

#include <charconv>
#include <cmath>

#include "common/error.hpp"
#include "common/format.hpp"

namespace augflow::model {
namespace {

constexpr const char* kAcceptedForms =
    "accepted forms: none | l2:LAMBDA | l1:LAMBDA | elastic:LAMBDA[:BETA] (e.g. l2:5e-4)";

float sign(float w) { return w > 0.0f ? 1.0f : (w < 0.0f ? -1.0f : 0.0f); }

void check(const Regularizer& reg) {
  if (!(reg.lambda >= 0.0) || !std::isfinite(reg.lambda)) {
    throw ConfigError("regularizer: lambda must be a finite number >= 0, got " +
                      std::to_string(reg.lambda));
  }
  if (!(reg.beta >= 0.0) || !std::isfinite(reg.beta)) {
    throw ConfigError("regularizer: elastic-net beta must be a finite number >= 0, got " +
                      std::to_string(reg.beta));
  }
}

/// Σ term(v[i]) in double over 8 interleaved partial sums, added in a fixed order at the end:
/// one running sum is a chain of dependent additions that runs ~8x slower (it cost a tenth
/// of a two-layer net's training step), and a fixed order keeps the value reproducible.
template <typename Term>
double lane_sum(const float* v, std::size_t n, Term term) {
  constexpr std::size_t kLanes = 8;
  double lanes[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (std::size_t l = 0; l < kLanes; ++l) lanes[l] += term(static_cast<double>(v[i + l]));
  for (std::size_t l = 0; i < n; ++i, ++l) lanes[l] += term(static_cast<double>(v[i]));
  double sum = 0.0;
  for (double lane : lanes) sum += lane;
  return sum;
}

/// Σ over one tensor of the penalty's per-weight term (without λ), in double.
double sum_terms(RegularizerKind kind, double beta, const Tensor& w) {
  const float* v = w.data();
  const std::size_t n = w.size();
  switch (kind) {
    case RegularizerKind::l2:
      return lane_sum(v, n, [](double x) { return x * x; });
    case RegularizerKind::l1:
      return lane_sum(v, n, [](double x) { return std::fabs(x); });
    case RegularizerKind::elastic:
      return lane_sum(v, n, [beta](double x) { return beta * x * x + std::fabs(x); });
    case RegularizerKind::none:
      break;
  }
  return 0.0;
}

double penalty(const Regularizer& reg, const std::vector<Param*>& params, bool add_gradient) {
  check(reg);
  if (reg.kind == RegularizerKind::none || reg.lambda == 0.0) return 0.0;
  double total = 0.0;
  const float lambda = static_cast<float>(reg.lambda);
  const float two_lambda_beta = static_cast<float>(2.0 * reg.lambda * reg.beta);
  const float two_lambda = static_cast<float>(2.0 * reg.lambda);
  for (Param* p : params) {
    if (!p->regularized) continue;
    total += sum_terms(reg.kind, reg.beta, p->value);
    if (!add_gradient) continue;
    if (p->grad.size() != p->value.size()) {
      throw ShapeError("regularizer: parameter " + p->name + " has " +
                       std::to_string(p->value.size()) + " values but " +
                       std::to_string(p->grad.size()) + " gradients");
    }
    const float* w = p->value.data();
    float* g = p->grad.data();
    const std::size_t n = p->value.size();
    switch (reg.kind) {
      case RegularizerKind::l2:
        for (std::size_t i = 0; i < n; ++i) g[i] += two_lambda * w[i];
        break;
      case RegularizerKind::l1:
        for (std::size_t i = 0; i < n; ++i) g[i] += lambda * sign(w[i]);
        break;
      case RegularizerKind::elastic:
        for (std::size_t i = 0; i < n; ++i) g[i] += two_lambda_beta * w[i] + lambda * sign(w[i]);
        break;
      case RegularizerKind::none:
        break;
    }
  }
  return reg.lambda * total;
}

[[noreturn]] void fail(std::string_view text, const std::string& why) {
  throw ConfigError("regularizer \"" + std::string(text) + "\": " + why + "; " + kAcceptedForms);
}

double parse_number(std::string_view text, std::string_view field, const char* what) {
  double value = 0.0;
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (field.empty() || ec != std::errc() || end != field.data() + field.size() ||
      !std::isfinite(value) || value < 0.0) {
    fail(text, std::string(what) + " \"" + std::string(field) + "\" is not a finite number >= 0");
  }
  return value;
}

}  // namespace

double apply_regularizer(const Regularizer& reg, const std::vector<Param*>& params) {
  return penalty(reg, params, true);
}

double regularizer_penalty(const Regularizer& reg, const std::vector<Param*>& params) {
  return penalty(reg, params, false);
}

Regularizer parse_regularizer(std::string_view text) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    const std::size_t colon = text.find(':', start);
    fields.push_back(text.substr(start, colon == std::string_view::npos ? colon : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  Regularizer reg;
  const std::string_view kind = fields[0];
  if (kind == "none") {
    if (fields.size() != 1) fail(text, "\"none\" takes no arguments");
    return reg;
  }
  if (kind == "l2" || kind == "l1") {
    if (fields.size() != 2) fail(text, std::string(kind) + " takes exactly one argument, LAMBDA");
    reg.kind = kind == "l2" ? RegularizerKind::l2 : RegularizerKind::l1;
    reg.lambda = parse_number(text, fields[1], "LAMBDA");
    return reg;
  }
  if (kind == "elastic") {
    if (fields.size() != 2 && fields.size() != 3) {
      fail(text, "elastic takes LAMBDA and optionally BETA");
    }
    reg.kind = RegularizerKind::elastic;
    reg.lambda = parse_number(text, fields[1], "LAMBDA");
    if (fields.size() == 3) reg.beta = parse_number(text, fields[2], "BETA");
    return reg;
  }
  fail(text, "unknown kind \"" + std::string(kind) + "\"");
}

std::string print_regularizer(const Regularizer& reg) {
  switch (reg.kind) {
    case RegularizerKind::none:
      return "none";
    case RegularizerKind::l2:
      return "l2:" + format_number(reg.lambda);
    case RegularizerKind::l1:
      return "l1:" + format_number(reg.lambda);
    case RegularizerKind::elastic:
      return "elastic:" + format_number(reg.lambda) + ":" + format_number(reg.beta);
  }
  return "none";
}

}  // namespace augflow::model
