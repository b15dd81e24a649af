// make_layer: the one list of every layer kind (an explicit switch, no static self-registration,
// which loses entries in static builds). Arguments are checked here (integers where counts are
// meant, ranges), then the layer's constructor checks the input shape.
#include <charconv>
#include <cmath>
#include <set>
#include <string>

#include "common/error.hpp"
#include "common/format.hpp"
#include "model/activation.hpp"
#include "model/batch_norm.hpp"
#include "model/conv.hpp"
#include "model/dense.hpp"
#include "model/dropout.hpp"
#include "model/net.hpp"
#include "model/pool.hpp"
#include "model/residual.hpp"

namespace augflow::model {
namespace {

/// A readable form of the token for messages: the kind and its arguments ("conv{k=3,out=0}").
std::string token_text(const LayerSpec& spec) {
  std::string s = spec.kind;
  if (spec.args.empty()) return s;
  s += "{";
  bool first = true;
  for (const auto& [key, value] : spec.args) {
    if (!first) s += ",";
    first = false;
    s += key + "=" + format_number(value);
  }
  return s + "}";
}

class Args {
 public:
  Args(const LayerSpec& spec, std::set<std::string> allowed) : spec_(spec) {
    for (const auto& [key, value] : spec.args) {
      if (!allowed.count(key))
        throw SpecError(token_text(spec) + ": unknown argument '" + key + "' for " + spec.kind,
                        spec.kind);
      if (!std::isfinite(value))
        throw SpecError(token_text(spec) + ": argument '" + key + "' is not finite", spec.kind);
    }
  }

  /// A whole number >= `min`; `fallback` when absent (required when fallback < min).
  int integer(const std::string& key, int min, int fallback) const {
    const auto it = spec_.args.find(key);
    if (it == spec_.args.end()) {
      if (fallback < min)
        throw SpecError(token_text(spec_) + ": missing argument '" + key + "'", spec_.kind);
      return fallback;
    }
    const double v = it->second;
    if (v != std::floor(v) || v < min || v > 1 << 24)
      throw SpecError(token_text(spec_) + ": '" + key + "' must be a whole number >= " +
                          std::to_string(min) + ", got " + format_number(v),
                      spec_.kind);
    return static_cast<int>(v);
  }

  double real(const std::string& key, double fallback) const {
    const auto it = spec_.args.find(key);
    return it == spec_.args.end() ? fallback : it->second;
  }

 private:
  const LayerSpec& spec_;
};

LayerPtr build(const LayerSpec& spec, const Shape& in) {
  const std::string& kind = spec.kind;
  if (kind == "fc") {
    const Args a(spec, {"out", "dropconnect"});
    return std::make_unique<Dense>(in, a.integer("out", 1, 0), a.real("dropconnect", 0.0));
  }
  if (kind == "conv") {
    const Args a(spec, {"out", "k", "s", "p"});
    return std::make_unique<Conv2d>(in, a.integer("out", 1, 0), a.integer("k", 1, 0),
                                    a.integer("s", 1, 1), a.integer("p", 0, 0));
  }
  if (kind == "bn") {
    const Args a(spec, {});
    return std::make_unique<BatchNorm>(in);
  }
  if (kind == "relu") {
    const Args a(spec, {});
    return std::make_unique<ReLU>();
  }
  if (kind == "lrelu") {
    const Args a(spec, {"a"});
    return std::make_unique<LeakyReLU>(a.real("a", LeakyReLU::kDefaultSlope));
  }
  if (kind == "tanh") {
    const Args a(spec, {});
    return std::make_unique<Tanh>();
  }
  if (kind == "pool") {
    const Args a(spec, {"k", "s", "p"});
    const int k = a.integer("k", 1, 0);
    return std::make_unique<MaxPool>(in, k, a.integer("s", 1, k), a.integer("p", 0, 0));
  }
  if (kind == "avgpool") {
    const Args a(spec, {"k"});
    return std::make_unique<AvgPool>(in, a.integer("k", 1, 0));
  }
  if (kind == "gap") {
    const Args a(spec, {});
    return std::make_unique<GlobalAvgPool>();
  }
  if (kind == "flatten") {
    const Args a(spec, {});
    return std::make_unique<Flatten>();
  }
  if (kind == "drop") {
    const Args a(spec, {"p"});
    if (!spec.args.count("p")) throw SpecError(token_text(spec) + ": missing argument 'p'", kind);
    return std::make_unique<Dropout>(a.real("p", 0.0));
  }
  if (kind == "dc") {
    const Args a(spec, {"p"});
    if (!spec.args.count("p")) throw SpecError(token_text(spec) + ": missing argument 'p'", kind);
    return std::make_unique<DropConnectMarker>(a.real("p", 0.0));
  }
  if (kind == "res") {
    const Args a(spec, {"out", "s", "survival", "bn"});
    const int bn = a.integer("bn", 0, 1);
    if (bn > 1) throw SpecError(token_text(spec) + ": 'bn' must be 0 (no batch norm) or 1 (batch norm), got " +
                                    std::to_string(bn), kind);
    return std::make_unique<Residual>(in, a.integer("out", 1, 0), a.integer("s", 1, 1),
                                      a.real("survival", 1.0), bn == 1);
  }
  throw SpecError("unknown layer kind '" + kind + "'", kind);
}

}  // namespace

LayerPtr make_layer(const LayerSpec& spec, const Shape& in) {
  LayerPtr layer;
  try {
    layer = build(spec, in);
  } catch (const ShapeError& e) {
    // A composite layer (res) reports its inner conv: name the token that was written.
    const std::string what = e.what();
    const std::string prefix = token_text(spec) + ": ";
    if (what.rfind(spec.kind, 0) == 0) throw;
    throw ShapeError(prefix + what);
  }
  layer->output_shape(in);  // throws ShapeError naming layer->spec() when `in` does not fit
  return layer;
}

}  // namespace augflow::model
