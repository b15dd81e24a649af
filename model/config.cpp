// The model spec parser: compact tokens, presets and JSON (see model/config.hpp for the grammar).
//
// Argument keys of each kind (what make_layer reads from LayerSpec::args; every key is always
// present after parsing, defaults filled in, so that parse(print(x)) == x compares equal):
//   conv     out, k, s (1), p (0)        whole numbers; out, k, s >= 1, p >= 0
//   fc       out                         >= 1
//   lrelu    a (0.01), the leaky slope   in [0, 1)
//   pool     k, s (k), p (0)             whole numbers; k, s >= 1, 0 <= p <= k/2 (PyTorch's rule)
//   avgpool  k                           >= 1 (stride k)
//   drop     p                           drop probability in [0, 1)
//   dc       p                           drop probability in [0, 1); applies to the next fc
//   res      out, s (1), bn (1)          out, s >= 1; bn 0 or 1 (written b0/b1 in the compact
//                                        form: b0 is the block without batch norm, convs with bias)
//   bn, relu, tanh, gap, flatten         no arguments
// "sdP" is not a layer: it sets ModelSpec::survival, P in (0, 1], and needs a res block.
//
// Presets (C = the data set's class count):
//   twolayer     fc50-relu-fcC                     the lecture's two-layer net
//   mlp          fc512-relu-drop0.2-fc256-relu-fcC
//   cnn-small    conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-pool2-fc128-relu-fcC
//                (the benchmarks' model)
//   resnet-mini  conv16k3p1-bn-relu-res16-res32s2-res64s2-gap-fcC-sd0.8
//                (a small ResNet, He et al. 2016, with stochastic depth, Huang et al. 2016:
//                the last block survives with probability 0.8)
//   resnet-photo conv16k3s2p1-bn-relu-pool3s2p1-res16-res32s2-res64s2-gap-fcC-sd0.8
//                (resnet-mini behind an ImageNet-style stem that divides the side by 4: the
//                default for photos, where a stride-1 first block at 224x224 would cost 16x more)
//
// Errors are SpecError: in the compact form the token and its 0-based character position (the
// message shows the spec with a caret under the token and lists the accepted forms, as the
// augmentation spec does); in the JSON form the layer's JSON text and its index in "layers".
#include "model/config.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "common/spec_message.hpp"

namespace augflow::model {
namespace {

/// Sizes above this are surely a typo, and keep shape arithmetic far from int overflow.
constexpr double kMaxSize = 1 << 20;
constexpr double kDefaultSlope = 0.01;

constexpr std::string_view kAcceptedForms =
    "convNkK[sS][pP], fcN, bn, relu, lrelu[A], tanh, poolK[sS][pP], avgpoolK, gap, flatten, dropP, dcP, "
    "resN[sS][b0], sdP (tokens joined by '-', e.g. conv32k3p1-bn-relu-pool2-fc10); presets: "
    "twolayer, mlp, cnn-small, resnet-mini, resnet-photo; or JSON {\"version\":1,\"layers\":[...]}";

/// How a kind is written in the compact form.
enum class Syntax {
  bare,            // bn
  size,            // fc10, pool2: one whole number, stored under `key`
  size_suffixes,   // conv32k3s2p1, pool3s2p1, res64s2b0: a whole number, then letter+number pairs
  number,          // drop0.5: one real number, required
  optional_number  // lrelu, lrelu0.2: one real number with a default
};

struct KindInfo {
  std::string_view name;
  Syntax syntax;
  std::string_view key;       // the main argument
  std::string_view suffixes;  // letters allowed after the main number (size_suffixes)
  std::string_view form;      // for error messages
};

constexpr KindInfo kKinds[] = {
    {"conv", Syntax::size_suffixes, "out", "ksp", "convNkK[sS][pP], e.g. conv32k3p1 or conv64k3s2p1"},
    {"fc", Syntax::size, "out", "", "fcN, e.g. fc10"},
    {"bn", Syntax::bare, "", "", "bn"},
    {"relu", Syntax::bare, "", "", "relu"},
    {"lrelu", Syntax::optional_number, "a", "", "lrelu or lreluA, e.g. lrelu0.2"},
    {"tanh", Syntax::bare, "", "", "tanh"},
    {"pool", Syntax::size_suffixes, "k", "sp", "poolK[sS][pP] with P <= K/2, e.g. pool2 or pool3s2p1"},
    {"avgpool", Syntax::size, "k", "", "avgpoolK, e.g. avgpool2"},
    {"gap", Syntax::bare, "", "", "gap"},
    {"flatten", Syntax::bare, "", "", "flatten"},
    {"drop", Syntax::number, "p", "", "dropP with P in [0,1), e.g. drop0.5"},
    {"dc", Syntax::number, "p", "", "dcP with P in [0,1), followed by an fc, e.g. dc0.5-fc10"},
    {"res", Syntax::size_suffixes, "out", "sb", "resN[sS][b0], e.g. res32, res64s2, or res64s2b0 without batch norm"},
    {"sd", Syntax::number, "p", "", "sdP with P in (0,1], e.g. sd0.8"},
};

/// The argument key of a suffix letter: the letter itself, but "bn" for res's b0/b1.
std::string suffix_key(char letter) { return letter == 'b' ? "bn" : std::string(1, letter); }

const KindInfo* find_kind(std::string_view name) {
  for (const auto& kind : kKinds)
    if (kind.name == name) return &kind;
  return nullptr;
}

struct Preset {
  std::string_view name;
  std::string_view body;  // the text before the final fcC (and after it, for resnet-mini)
  std::string_view tail;
};

constexpr Preset kPresets[] = {
    {"twolayer", "fc50-relu-fc", ""},
    {"mlp", "fc512-relu-drop0.2-fc256-relu-fc", ""},
    {"cnn-small", "conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-pool2-fc128-relu-fc", ""},
    {"resnet-mini", "conv16k3p1-bn-relu-res16-res32s2-res64s2-gap-fc", "-sd0.8"},
    {"resnet-photo", "conv16k3s2p1-bn-relu-pool3s2p1-res16-res32s2-res64s2-gap-fc", "-sd0.8"},
};

/// Shortest text that reads back as exactly `x`, never in exponent form (an exponent's '-'
/// would split the token).
std::string format_number(double x) {
  char buffer[400];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, x, std::chars_format::fixed);
  return std::string(buffer, result.ptr);
}

/// Where an error is: the compact text and a character position, or a JSON layer.
struct Where {
  std::string_view spec;   // empty for JSON
  std::size_t position = 0;
  std::string token;
  bool json = false;
};

[[noreturn]] void fail(const Where& where, const std::string& what, std::string_view accepted = {}) {
  if (!where.json) throw_spec_error("model spec", where.spec, where.position, where.token, what, accepted);
  std::string message = "model spec JSON: " + what;
  if (!where.token.empty()) message += " (layer " + std::to_string(where.position) + ": " + where.token + ")";
  if (!accepted.empty()) message += "\naccepted: " + std::string(accepted);
  throw SpecError(message, where.token, where.position);
}

bool is_whole(double x) { return std::isfinite(x) && x == std::floor(x); }

/// Checks the values of one layer (shared by the compact and the JSON form).
void validate_layer(const LayerSpec& layer, const KindInfo& kind, const Where& where) {
  const auto whole_at_least = [&](const char* key, double min, const std::string& meaning) {
    const double x = layer.args.at(key);
    if (!is_whole(x) || x < min || x > kMaxSize) {
      fail(where,
           layer.kind + ": " + meaning + " must be a whole number " +
               (min > 0 ? "from " + format_number(min) : std::string("from 0")) + " to " +
               format_number(kMaxSize) + ", not " + format_number(x),
           kind.form);
    }
  };
  const auto probability = [&](const char* key, bool zero_ok, bool one_ok, const std::string& meaning) {
    const double x = layer.args.at(key);
    const bool low_ok = zero_ok ? x >= 0.0 : x > 0.0;
    const bool high_ok = one_ok ? x <= 1.0 : x < 1.0;
    if (!std::isfinite(x) || !low_ok || !high_ok) {
      fail(where,
           layer.kind + ": " + meaning + " " + format_number(x) + " is outside " + (zero_ok ? "[0" : "(0") +
               ",1" + (one_ok ? "]" : ")"),
           kind.form);
    }
  };
  if (layer.kind == "conv") {
    whole_at_least("out", 1, "the number of output channels");
    whole_at_least("k", 1, "the kernel size");
    whole_at_least("s", 1, "the stride");
    whole_at_least("p", 0, "the padding");
  } else if (layer.kind == "fc") {
    whole_at_least("out", 1, "the number of outputs");
  } else if (layer.kind == "pool") {
    whole_at_least("k", 1, "the window size");
    whole_at_least("s", 1, "the stride");
    whole_at_least("p", 0, "the padding");
    const double k = layer.args.at("k"), p = layer.args.at("p");
    const double most = std::floor(k / 2);
    if (p > most)
      fail(where,
           "pool: the padding " + format_number(p) + " is more than half the window " + format_number(k) +
               " (at most " + format_number(most) + ", K/2 rounded down, as in PyTorch's MaxPool2d); write p" +
               format_number(most) + (most > 0 ? " or less" : " (no padding)") + ", or a larger window",
           kind.form);
  } else if (layer.kind == "avgpool") {
    whole_at_least("k", 1, "the window size");
  } else if (layer.kind == "res") {
    whole_at_least("out", 1, "the number of channels");
    whole_at_least("s", 1, "the stride");
    const double bn = layer.args.at("bn");
    if (bn != 0.0 && bn != 1.0)
      fail(where, "res: bn must be 0 (no batch norm: b0) or 1 (with batch norm, the default), not " + format_number(bn),
           kind.form);
  } else if (layer.kind == "lrelu") {
    probability("a", true, false, "the leaky slope");
  } else if (layer.kind == "drop") {
    probability("p", true, false, "the drop probability");
  } else if (layer.kind == "dc") {
    probability("p", true, false, "the DropConnect drop probability");
  }
}

/// The defaults of a kind's optional arguments.
void fill_defaults(LayerSpec& layer) {
  if (layer.kind == "conv") {
    layer.args.try_emplace("s", 1.0);
    layer.args.try_emplace("p", 0.0);
  } else if (layer.kind == "pool") {
    // The stride defaults to the window (non-overlapping windows); without k, the "needs k"
    // check reports it.
    if (const auto k = layer.args.find("k"); k != layer.args.end()) layer.args.try_emplace("s", k->second);
    layer.args.try_emplace("p", 0.0);
  } else if (layer.kind == "res") {
    layer.args.try_emplace("s", 1.0);
    layer.args.try_emplace("bn", 1.0);
  } else if (layer.kind == "lrelu") {
    layer.args.try_emplace("a", kDefaultSlope);
  }
}

/// Argument keys a kind accepts (in the JSON form).
std::vector<std::string_view> keys_of(std::string_view kind) {
  if (kind == "conv") return {"out", "k", "s", "p"};
  if (kind == "fc") return {"out"};
  if (kind == "lrelu") return {"a"};
  if (kind == "pool") return {"k", "s", "p"};
  if (kind == "avgpool") return {"k"};
  if (kind == "drop" || kind == "dc") return {"p"};
  if (kind == "res") return {"out", "s", "bn"};
  return {};
}

/// A layer of the spec with where it came from, before the whole-spec checks.
struct Parsed {
  LayerSpec layer;
  Where where;
};

/// Whole-spec rules: something to build, each dc reaches an fc, sd only with res blocks.
ModelSpec finish(std::vector<Parsed> parsed, std::optional<std::pair<double, Where>> survival,
                 const Where& whole) {
  ModelSpec spec;
  if (parsed.empty()) fail(whole, "the model has no layers", kAcceptedForms);
  const Parsed* pending_dc = nullptr;
  int res_blocks = 0;
  for (const auto& p : parsed) {
    if (p.layer.kind == "dc") {
      if (pending_dc)
        fail(p.where, "a second dc before the fc that " + pending_dc->where.token + " applies to",
             "one dcP directly or eventually followed by an fc, e.g. dc0.5-fc10");
      pending_dc = &p;
    } else if (p.layer.kind == "fc") {
      pending_dc = nullptr;
    }
    res_blocks += p.layer.kind == "res";
    spec.layers.push_back(p.layer);
  }
  if (pending_dc)
    fail(pending_dc->where, "dc (DropConnect) applies to the weights of the next fc, but no fc follows it",
         "dcP followed by an fc, e.g. fc128-relu-dc0.5-fc10");
  if (survival) {
    if (res_blocks == 0)
      fail(survival->second, "sd (stochastic depth) needs res blocks, and the model has none",
           "resN[sS] blocks and one sdP, e.g. conv16k3p1-res16-res32s2-gap-fc10-sd0.8");
    spec.survival = survival->first;
  }
  return spec;
}

// ---------------------------------------------------------------------------------------------
// The compact form.

/// Reads a whole number (digits only) from `text` at `pos`; nullopt when there is none.
std::optional<double> read_digits(std::string_view text, std::size_t& pos) {
  const std::size_t start = pos;
  double value = 0;
  while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos]))) {
    value = value * 10 + (text[pos] - '0');
    ++pos;
  }
  if (pos == start) return std::nullopt;
  return value;
}

Parsed parse_token(std::string_view spec, std::string_view token, std::size_t position,
                   std::optional<std::pair<double, Where>>& survival) {
  Where where{spec, position, std::string(token), false};
  std::size_t name_end = 0;
  while (name_end < token.size() && std::isalpha(static_cast<unsigned char>(token[name_end]))) ++name_end;
  const std::string_view name = token.substr(0, name_end);
  const KindInfo* kind = find_kind(name);
  if (!kind) fail(where, "unknown token", kAcceptedForms);

  Parsed parsed{LayerSpec{std::string(name), {}}, where};
  auto& args = parsed.layer.args;
  const std::string_view rest = token.substr(name_end);
  const auto bad = [&](const std::string& what) { fail(where, what, kind->form); };

  switch (kind->syntax) {
    case Syntax::bare:
      if (!rest.empty()) bad(std::string(name) + " takes no argument");
      break;
    case Syntax::size:
    case Syntax::size_suffixes: {
      std::size_t pos = 0;
      const auto main = read_digits(rest, pos);
      if (!main) bad(std::string(name) + " needs a whole number right after it");
      args[std::string(kind->key)] = *main;
      while (pos < rest.size()) {
        const char letter = rest[pos];
        if (kind->suffixes.find(letter) == std::string_view::npos)
          bad("unexpected '" + std::string(rest.substr(pos)) + "' after " + std::string(token.substr(0, name_end + pos)));
        const std::string key = suffix_key(letter);
        if (args.count(key)) bad("'" + std::string(1, letter) + "' given twice");
        ++pos;
        const auto value = read_digits(rest, pos);
        if (!value) bad("'" + std::string(1, letter) + "' needs a whole number right after it");
        args[key] = *value;
      }
      if (kind->name == "conv" && !args.count("k")) bad("conv needs a kernel size kK");
      break;
    }
    case Syntax::number:
    case Syntax::optional_number: {
      if (rest.empty()) {
        if (kind->syntax == Syntax::number) bad(std::string(name) + " needs a number right after it");
        break;  // the default is filled below
      }
      double x = 0;
      const auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), x);
      if (ec != std::errc() || ptr != rest.data() + rest.size() || !std::isfinite(x))
        bad("'" + std::string(rest) + "' is not a number");
      args[std::string(kind->key)] = x;
      break;
    }
  }

  if (kind->name == "sd") {
    const double p = args.at("p");
    if (survival) fail(where, "sd given twice (the first is " + survival->second.token + ")", kind->form);
    if (!(p > 0.0 && p <= 1.0))
      fail(where, "sd: the survival probability " + format_number(p) + " is outside (0,1]", kind->form);
    survival.emplace(p, where);
    parsed.layer.kind.clear();  // not a layer
    return parsed;
  }
  fill_defaults(parsed.layer);
  validate_layer(parsed.layer, *kind, where);
  return parsed;
}

ModelSpec parse_compact(std::string_view text) {
  std::vector<Parsed> parsed;
  std::optional<std::pair<double, Where>> survival;
  std::size_t start = 0;
  while (true) {
    const std::size_t dash = std::min(text.find('-', start), text.size());
    std::size_t first = start;
    std::size_t last = dash;
    while (first < last && std::isspace(static_cast<unsigned char>(text[first]))) ++first;
    while (last > first && std::isspace(static_cast<unsigned char>(text[last - 1]))) --last;
    if (first == last) {
      const bool whole_empty = text.find_first_not_of(" \t\r\n") == std::string_view::npos;
      fail(Where{text, first, "", false},
           whole_empty ? "empty model spec" : "empty token (two '-' in a row, or a '-' at an end)",
           kAcceptedForms);
    }
    Parsed p = parse_token(text, text.substr(first, last - first), first, survival);
    if (!p.layer.kind.empty()) parsed.push_back(std::move(p));
    if (dash >= text.size()) break;
    start = dash + 1;
  }
  return finish(std::move(parsed), survival, Where{text, 0, "", false});
}

// ---------------------------------------------------------------------------------------------
// The JSON form.

ModelSpec parse_json(std::string_view text) {
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number that overflows a double (1e999).
    throw SpecError(std::string("model spec JSON does not parse: ") + e.what());
  }
  const Where whole{{}, 0, "", true};
  if (!json.is_object() || !json.contains("layers") || !json["layers"].is_array())
    fail(whole, "expected {\"version\": 1, \"layers\": [{\"kind\": \"fc\", \"out\": 10}, ...], \"survival\": 1}");
  for (const auto& [key, value] : json.items()) {
    if (key != "version" && key != "layers" && key != "survival")
      fail(whole, "unknown key \"" + key + "\" (accepted: version, layers, survival)");
    (void)value;
  }
  if (json.contains("version") && json["version"] != kModelSpecVersion)
    fail(whole, "version " + json["version"].dump() + " is not supported (this augflow reads version " +
                    std::to_string(kModelSpecVersion) + ")");
  std::vector<Parsed> parsed;
  const auto& layers = json["layers"];
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const auto& item = layers[i];
    Where where{{}, i, item.dump(), true};
    if (!item.is_object() || !item.contains("kind") || !item["kind"].is_string())
      fail(where, "each layer needs a \"kind\"", kAcceptedForms);
    const std::string name = item["kind"].get<std::string>();
    const KindInfo* kind = find_kind(name);
    if (!kind || name == "sd")
      fail(where, "unknown kind \"" + name + "\"" + (name == "sd" ? " (stochastic depth is the top-level \"survival\")" : ""),
           "conv, fc, bn, relu, lrelu, tanh, pool, avgpool, gap, flatten, drop, dc, res");
    Parsed p{LayerSpec{name, {}}, where};
    const auto keys = keys_of(name);
    for (const auto& [key, value] : item.items()) {
      if (key == "kind") continue;
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        std::string accepted;
        for (const auto k : keys) accepted += (accepted.empty() ? "" : ", ") + std::string(k);
        fail(where, name + " has no argument \"" + key + "\"",
             accepted.empty() ? name + " takes no arguments" : name + " takes " + accepted);
      }
      if (!value.is_number()) fail(where, name + ": \"" + key + "\" must be a number", kind->form);
      p.layer.args[key] = value.get<double>();
    }
    fill_defaults(p.layer);
    for (const auto key : keys)
      if (!p.layer.args.count(std::string(key)))
        fail(where, name + " needs \"" + std::string(key) + "\"", kind->form);
    validate_layer(p.layer, *kind, where);
    parsed.push_back(std::move(p));
  }
  std::optional<std::pair<double, Where>> survival;
  if (json.contains("survival")) {
    const auto& s = json["survival"];
    Where where{{}, 0, "survival: " + s.dump(), true};
    if (!s.is_number()) fail(where, "\"survival\" must be a number in (0,1]");
    const double p = s.get<double>();
    if (!(p > 0.0 && p <= 1.0)) fail(where, "the survival probability " + s.dump() + " is outside (0,1]");
    // survival 1 (stochastic depth off) is also valid without res blocks: it is the default
    // that model_spec_to_json writes for every model.
    if (p != 1.0) survival.emplace(p, where);
  }
  return finish(std::move(parsed), survival, whole);
}

}  // namespace

ModelSpec parse_model_spec(std::string_view text, int classes) {
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string_view::npos && text[first] == '{') return parse_json(text);
  const auto last = text.find_last_not_of(" \t\r\n");
  const std::string_view trimmed = first == std::string_view::npos ? text.substr(0, 0) : text.substr(first, last - first + 1);
  for (const auto& preset : kPresets) {
    if (trimmed != preset.name) continue;
    if (classes < 1)
      throw SpecError("model spec: the preset " + std::string(preset.name) +
                          " ends with fcC and needs the class count of the data (got " +
                          std::to_string(classes) + ")",
                      std::string(preset.name), first);
    return parse_compact(std::string(preset.body) + std::to_string(classes) + std::string(preset.tail));
  }
  return parse_compact(text);
}

std::string print_model_spec(const ModelSpec& spec) {
  std::string text;
  const auto arg = [](const LayerSpec& layer, const char* key) {
    const auto it = layer.args.find(key);
    if (it == layer.args.end())
      throw Error("print_model_spec: " + layer.kind + " has no argument '" + key + "'");
    return it->second;
  };
  // The keys added after version 1 first shipped (pool's s and p, res's bn) may be missing from
  // a spec built in code (the ONNX reader's): their defaults then.
  const auto arg_or = [](const LayerSpec& layer, const char* key, double fallback) {
    const auto it = layer.args.find(key);
    return it == layer.args.end() ? fallback : it->second;
  };
  for (const auto& layer : spec.layers) {
    std::string token = layer.kind;
    if (layer.kind == "conv") {
      token += format_number(arg(layer, "out")) + "k" + format_number(arg(layer, "k"));
      if (arg(layer, "s") != 1.0) token += "s" + format_number(arg(layer, "s"));
      if (arg(layer, "p") != 0.0) token += "p" + format_number(arg(layer, "p"));
    } else if (layer.kind == "fc") {
      token += format_number(arg(layer, "out"));
    } else if (layer.kind == "res") {
      token += format_number(arg(layer, "out"));
      if (arg(layer, "s") != 1.0) token += "s" + format_number(arg(layer, "s"));
      if (arg_or(layer, "bn", 1.0) != 1.0) token += "b" + format_number(arg_or(layer, "bn", 1.0));
    } else if (layer.kind == "pool") {
      token += format_number(arg(layer, "k"));
      const double k = arg(layer, "k"), stride = arg_or(layer, "s", k), pad = arg_or(layer, "p", 0.0);
      if (stride != k) token += "s" + format_number(stride);
      if (pad != 0.0) token += "p" + format_number(pad);
    } else if (layer.kind == "avgpool") {
      token += format_number(arg(layer, "k"));
    } else if (layer.kind == "drop" || layer.kind == "dc") {
      token += format_number(arg(layer, "p"));
    } else if (layer.kind == "lrelu") {
      if (arg(layer, "a") != kDefaultSlope) token += format_number(arg(layer, "a"));
    } else if (!find_kind(layer.kind) || layer.kind == "sd") {
      throw Error("print_model_spec: unknown layer kind '" + layer.kind + "'");
    }
    text += (text.empty() ? "" : "-") + token;
  }
  if (spec.survival != 1.0) text += (text.empty() ? "" : "-") + ("sd" + format_number(spec.survival));
  return text;
}

nlohmann::json model_spec_to_json(const ModelSpec& spec) {
  nlohmann::json layers = nlohmann::json::array();
  for (const auto& layer : spec.layers) {
    nlohmann::json item = {{"kind", layer.kind}};
    for (const auto& [key, value] : layer.args) {
      // Whole numbers as JSON integers, so that the file reads "out": 32 and not 32.0.
      if (is_whole(value) && std::abs(value) <= kMaxSize)
        item[key] = static_cast<long long>(value);
      else
        item[key] = value;
    }
    layers.push_back(std::move(item));
  }
  return {{"version", kModelSpecVersion}, {"layers", std::move(layers)}, {"survival", spec.survival}};
}

}  // namespace augflow::model
