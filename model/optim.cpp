#include "model/optim.hpp"

#include <charconv>
#include <cmath>
#include <numbers>

#include "common/error.hpp"
#include "common/format.hpp"

namespace augflow::model {
namespace {

constexpr const char* kStepKey = "step";
// Float32 represents every integer up to 2^24 exactly: the step count is exact up to there.
constexpr double kExactSteps = 16777216.0;

// ---------------------------------------------------------------------------------------------
// The five optimizers

class Sgd final : public Optimizer {
 public:
  std::string name() const override { return "sgd"; }

 protected:
  std::vector<std::string> buffer_names() const override { return {}; }
  void update(Param& p, std::vector<Tensor>&, float lr, std::uint64_t) override {
    float* w = p.value.data();
    const float* g = p.grad.data();
    const std::size_t n = p.value.size();
    for (std::size_t i = 0; i < n; ++i) w[i] -= lr * g[i];
  }
};

class Momentum final : public Optimizer {
 public:
  Momentum(float mu, bool nesterov) : mu_(mu), nesterov_(nesterov) {}
  std::string name() const override { return nesterov_ ? "nesterov" : "momentum"; }

 protected:
  std::vector<std::string> buffer_names() const override { return {"velocity"}; }
  void update(Param& p, std::vector<Tensor>& buffers, float lr, std::uint64_t) override {
    float* w = p.value.data();
    const float* g = p.grad.data();
    float* v = buffers[0].data();
    const std::size_t n = p.value.size();
    const float mu = mu_;  // a local: stores through v could otherwise alias the member
    if (nesterov_) {
      const float one_plus_mu = 1.0f + mu;
      for (std::size_t i = 0; i < n; ++i) {
        const float v_prev = v[i];
        v[i] = mu * v_prev - lr * g[i];
        w[i] += -mu * v_prev + one_plus_mu * v[i];
      }
    } else {
      for (std::size_t i = 0; i < n; ++i) {
        v[i] = mu * v[i] - lr * g[i];
        w[i] += v[i];
      }
    }
  }

 private:
  float mu_;
  bool nesterov_;
};

class Adam final : public Optimizer {
 public:
  Adam(const OptimizerOptions& o, bool decoupled)
      : beta1_(static_cast<float>(o.beta1)), beta2_(static_cast<float>(o.beta2)),
        epsilon_(static_cast<float>(o.epsilon)), weight_decay_(static_cast<float>(o.weight_decay)),
        beta1_d_(o.beta1), beta2_d_(o.beta2), decoupled_(decoupled) {}
  std::string name() const override { return decoupled_ ? "adamw" : "adam"; }

 protected:
  std::vector<std::string> buffer_names() const override { return {"adam_m", "adam_v"}; }
  void update(Param& p, std::vector<Tensor>& buffers, float lr, std::uint64_t t) override {
    float* w = p.value.data();
    const float* g = p.grad.data();
    float* m = buffers[0].data();
    float* v = buffers[1].data();
    const std::size_t n = p.value.size();
    if (decoupled_ && p.regularized && weight_decay_ != 0.0f) {
      const float keep = 1.0f - lr * weight_decay_;
      for (std::size_t i = 0; i < n; ++i) w[i] *= keep;
    }
    // Bias corrections in double (β^t underflows gracefully), applied as PyTorch does:
    // α m̂ / (sqrt(v̂) + ε) = (α / bc1) · m / (sqrt(v) / sqrt(bc2) + ε).
    const double td = static_cast<double>(t);
    const double bc1 = 1.0 - std::pow(beta1_d_, td);
    const double bc2 = 1.0 - std::pow(beta2_d_, td);
    const float step_size = static_cast<float>(lr / bc1);
    const float inv_sqrt_bc2 = static_cast<float>(1.0 / std::sqrt(bc2));
    // Locals and __restrict: the members and the four arrays could otherwise alias the stores,
    // which keeps the loop scalar (it was a fifth of a two-layer net's training step).
    const float beta1 = beta1_, beta2 = beta2_, epsilon = epsilon_;
    const float one_minus_b1 = 1.0f - beta1;
    const float one_minus_b2 = 1.0f - beta2;
    float* __restrict wr = w;
    float* __restrict mr = m;
    float* __restrict vr = v;
    const float* __restrict gr = g;
    for (std::size_t i = 0; i < n; ++i) {
      mr[i] = beta1 * mr[i] + one_minus_b1 * gr[i];
      vr[i] = beta2 * vr[i] + one_minus_b2 * gr[i] * gr[i];
      wr[i] -= step_size * mr[i] / (std::sqrt(vr[i]) * inv_sqrt_bc2 + epsilon);
    }
  }

 private:
  float beta1_, beta2_, epsilon_, weight_decay_;
  double beta1_d_, beta2_d_;
  bool decoupled_;
};

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Schedule helpers

constexpr const char* kScheduleForms =
    "accepted forms: constant | step:K:GAMMA | exp:GAMMA | cosine[:FLOOR] | cyclic:MAX:PERIOD | "
    "restarts:T0:TMULT[:FLOOR] | onecycle[:WARM[:FLOOR]] (e.g. step:10:0.1, exp:0.9, cosine:1e-5, "
    "cyclic:0.1:4, restarts:10:2, onecycle:0.3)";

[[noreturn]] void schedule_error(std::string_view text, const std::string& why) {
  throw ConfigError("learning-rate schedule \"" + std::string(text) + "\": " + why + "; " +
                    kScheduleForms);
}

double parse_real(std::string_view text, std::string_view field, const char* what) {
  double value = 0.0;
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (field.empty() || ec != std::errc() || end != field.data() + field.size() ||
      !std::isfinite(value)) {
    schedule_error(text, std::string(what) + " \"" + std::string(field) + "\" is not a number");
  }
  return value;
}

int parse_count(std::string_view text, std::string_view field, const char* what) {
  int value = 0;
  const auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (field.empty() || ec != std::errc() || end != field.data() + field.size() || value < 1) {
    schedule_error(text, std::string(what) + " \"" + std::string(field) +
                             "\" is not a whole number >= 1");
  }
  return value;
}

/// onecycle starts at base / kOneCycleDiv (PyTorch's OneCycleLR div_factor).
constexpr double kOneCycleDiv = 25.0;

void check_floor(const Schedule& s, double base_lr) {
  if (s.floor > base_lr) {
    throw ConfigError("learning-rate schedule " + print_schedule(s) + ": the floor " +
                      format_number(s.floor) + " is above the base rate " + format_number(base_lr));
  }
}

/// floor + (base − floor)(1 + cos(π x)) / 2 for x in [0, 1].
double cosine_between(double base, double floor, double x) {
  return floor + (base - floor) * 0.5 * (1.0 + std::cos(std::numbers::pi * x));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Optimizer

void Optimizer::step(const std::vector<Param*>& params, float lr) {
  if (!std::isfinite(lr) || lr < 0.0f) {
    throw ConfigError(name() + ": the learning rate must be finite and >= 0, got " +
                      std::to_string(lr));
  }
  const std::vector<std::string> names = buffer_names();
  const std::uint64_t t = steps_ + 1;
  // Check everything before changing anything, so a failed step leaves the model intact.
  try {
    check_step(params, names, t);
  } catch (...) {
    for (auto& [param, slot] : slots_) {
      if (slot.last_step == t) slot.last_step = 0;
    }
    throw;
  }
  for (Param* p : params) {
    update(*p, slots_[p->name].buffers, lr, t);
    p->grad.fill(0.0f);
  }
  steps_ = t;
}

void Optimizer::check_step(const std::vector<Param*>& params,
                           const std::vector<std::string>& names, std::uint64_t t) {
  for (Param* p : params) {
    if (p->grad.size() != p->value.size()) {
      throw ShapeError(name() + ": parameter " + p->name + " has " +
                       std::to_string(p->value.size()) + " values but " +
                       std::to_string(p->grad.size()) + " gradients");
    }
    Slot& slot = slots_[p->name];
    if (slot.last_step == t) {
      throw ConfigError(name() + ": two parameters are named \"" + p->name +
                        "\"; optimizer state is kept by name, so names must be unique");
    }
    slot.last_step = t;
    if (slot.buffers.empty()) {
      slot.buffers.assign(names.size(), Tensor(p->value.shape(), 0.0f));
    }
    for (std::size_t b = 0; b < slot.buffers.size(); ++b) {
      if (slot.buffers[b].size() != p->value.size()) {
        throw ShapeError(name() + ": state " + names[b] + "/" + p->name + " has " +
                         std::to_string(slot.buffers[b].size()) + " values but the parameter has " +
                         std::to_string(p->value.size()) +
                         " (optimizer state of a different model?)");
      }
    }
  }
}

OptimizerState Optimizer::state() const {
  OptimizerState out;
  const std::vector<std::string> names = buffer_names();
  for (const auto& [param, slot] : slots_) {
    for (std::size_t b = 0; b < slot.buffers.size() && b < names.size(); ++b) {
      out.emplace(names[b] + "/" + param, slot.buffers[b]);
    }
  }
  out.emplace(kStepKey, Tensor(Shape{1, 1, 1, 1}, static_cast<float>(steps_)));
  return out;
}

void Optimizer::load_state(const OptimizerState& state) {
  const std::vector<std::string> names = buffer_names();
  const auto step_it = state.find(kStepKey);
  if (step_it == state.end() || step_it->second.size() != 1) {
    throw ConfigError(name() + " state: missing the 1-element \"step\" tensor");
  }
  const float step_value = step_it->second[0];
  if (!(step_value >= 0.0f) || step_value > kExactSteps || std::floor(step_value) != step_value) {
    throw ConfigError(name() + " state: \"step\" must be a whole number >= 0, got " +
                      std::to_string(step_value));
  }
  std::map<std::string, Slot> slots;
  std::map<std::string, std::vector<bool>> present;
  for (const auto& [key, tensor] : state) {
    if (key == kStepKey) continue;
    const std::size_t slash = key.find('/');
    std::size_t index = names.size();
    if (slash != std::string::npos) {
      for (std::size_t b = 0; b < names.size(); ++b) {
        if (key.compare(0, slash, names[b]) == 0 && names[b].size() == slash) index = b;
      }
    }
    if (index == names.size() || slash + 1 == key.size()) {
      throw ConfigError(name() + " state: unexpected entry \"" + key + "\" (expected step" +
                        (names.empty() ? std::string() : ", " + join(names) + " /<param>") +
                        "; state of another optimizer?)");
    }
    const std::string param = key.substr(slash + 1);
    Slot& slot = slots[param];
    slot.buffers.resize(names.size());
    slot.buffers[index] = tensor;
    present[param].resize(names.size(), false);
    present[param][index] = true;
  }
  for (const auto& [param, flags] : present) {
    for (std::size_t b = 0; b < names.size(); ++b) {
      if (!flags[b]) {
        throw ConfigError(name() + " state: \"" + names[b] + "/" + param + "\" is missing");
      }
    }
  }
  slots_ = std::move(slots);
  steps_ = static_cast<std::uint64_t>(step_value);
}

const std::vector<std::string>& optimizer_names() {
  static const std::vector<std::string> names = {"sgd", "momentum", "nesterov", "adam", "adamw"};
  return names;
}

std::unique_ptr<Optimizer> make_optimizer(std::string_view name, const OptimizerOptions& o) {
  const auto in_unit = [](double x) { return x >= 0.0 && x < 1.0; };
  const auto bad = [&](const std::string& why) {
    return ConfigError("optimizer " + std::string(name) + ": " + why);
  };
  const bool known = name == "sgd" || name == "momentum" || name == "nesterov" ||
                     name == "adam" || name == "adamw";
  if (!known) {
    throw ConfigError("unknown optimizer \"" + std::string(name) + "\"; accepted: " +
                      join(optimizer_names()));
  }
  if (!(o.weight_decay >= 0.0) || !std::isfinite(o.weight_decay)) {
    throw bad("weight decay must be a finite number >= 0");
  }
  if (o.weight_decay != 0.0 && name != "adamw") {
    throw bad("decoupled weight decay is an adamw option; with " + std::string(name) +
              " use the L2 regularizer (weight decay d = 2 lambda)");
  }
  if (name == "sgd") return std::make_unique<Sgd>();
  if (name == "momentum" || name == "nesterov") {
    if (!in_unit(o.momentum)) throw bad("momentum must be in [0, 1)");
    return std::make_unique<Momentum>(static_cast<float>(o.momentum), name == "nesterov");
  }
  if (!in_unit(o.beta1) || !in_unit(o.beta2)) throw bad("beta1 and beta2 must be in [0, 1)");
  if (!(o.epsilon > 0.0) || !std::isfinite(o.epsilon)) throw bad("epsilon must be > 0");
  return std::make_unique<Adam>(o, name == "adamw");
}

// ---------------------------------------------------------------------------------------------
// Schedule

double Schedule::lr(double base_lr, int epoch, double fraction, int total_epochs) const {
  if (epoch < 0 || !(fraction >= 0.0 && fraction <= 1.0) || total_epochs < 1) {
    throw ConfigError("learning-rate schedule: need epoch >= 0, fraction in [0, 1] and at "
                      "least one epoch in total");
  }
  return value(base_lr, epoch, fraction, total_epochs);
}

double Schedule::lr_at(double base_lr, double progress, double total_epochs) const {
  if (!(progress >= 0.0 && progress <= 1.0) || !(total_epochs > 0.0) || !std::isfinite(total_epochs)) {
    throw ConfigError("learning-rate schedule: need progress in [0, 1] and a run of more than 0 "
                      "epochs");
  }
  // The same point in epochs. p = e / T times T can land a hair below e (1/49·49 < 1): a t
  // within rounding of a whole epoch is that epoch, so per-epoch schedules step where an
  // epoch run steps.
  double t = progress * total_epochs;
  if (std::fabs(t - std::round(t)) <= 1e-9 * std::max(1.0, total_epochs)) t = std::round(t);
  const double epoch = std::floor(t);
  return value(base_lr, static_cast<int>(epoch), t - epoch, total_epochs);
}

double Schedule::value(double base_lr, int epoch, double fraction, double total_epochs) const {
  if (!std::isfinite(base_lr) || base_lr < 0.0) {
    throw ConfigError("learning-rate schedule: the base rate must be finite and >= 0");
  }
  const double t = epoch + fraction;
  switch (kind) {
    case ScheduleKind::constant:
      return base_lr;
    case ScheduleKind::step:
      return base_lr * std::pow(gamma, epoch / step_epochs);
    case ScheduleKind::exp:
      return base_lr * std::pow(gamma, epoch);
    case ScheduleKind::cosine:
      check_floor(*this, base_lr);
      return t >= total_epochs ? floor : cosine_between(base_lr, floor, t / total_epochs);
    case ScheduleKind::cyclic: {
      if (max_lr < base_lr) {
        throw ConfigError("learning-rate schedule " + print_schedule(*this) + ": the maximum " +
                          format_number(max_lr) + " is below the base rate " +
                          format_number(base_lr));
      }
      const double p = std::fmod(t, period) / period;  // position in the cycle, [0, 1)
      return base_lr + (max_lr - base_lr) * (1.0 - std::fabs(2.0 * p - 1.0));
    }
    case ScheduleKind::restarts: {
      check_floor(*this, base_lr);
      double start = 0.0;
      double length = t0;
      if (t_mult == 1) {
        start = std::floor(t / t0) * t0;
      } else {
        while (t >= start + length) {
          start += length;
          length *= t_mult;
        }
      }
      return cosine_between(base_lr, floor, (t - start) / length);
    }
    case ScheduleKind::onecycle: {
      check_floor(*this, base_lr);
      const double p = std::min(1.0, t / total_epochs);
      const double start = base_lr / kOneCycleDiv;
      if (p < warm) return start + (base_lr - start) * (p / warm);
      return cosine_between(base_lr, floor, (p - warm) / (1.0 - warm));
    }
  }
  return base_lr;
}

double warmup_factor(double progress, double warmup) {
  if (!(warmup >= 0.0 && warmup < 1.0)) {
    throw ConfigError("warm-up: the fraction of the run must be in [0, 1), got " +
                      format_number(warmup));
  }
  if (warmup == 0.0 || progress >= warmup) return 1.0;
  return std::max(0.0, progress) / warmup;
}

std::vector<int> Schedule::cycle_ends(int total_epochs) const {
  std::vector<int> ends;
  if (total_epochs < 1) return ends;
  switch (kind) {
    case ScheduleKind::restarts: {
      long long length = t0;
      for (long long end = t0; end <= total_epochs; length *= t_mult, end += length) {
        ends.push_back(static_cast<int>(end));
      }
      break;
    }
    case ScheduleKind::cyclic:
      for (long long k = 1; k * period <= total_epochs + 1e-9; ++k) {
        const double end = k * period;
        const double whole = std::round(end);
        if (std::fabs(end - whole) < 1e-9 && whole >= 1.0) ends.push_back(static_cast<int>(whole));
      }
      break;
    default:
      ends.push_back(total_epochs);
      break;
  }
  return ends;
}

Schedule parse_schedule(std::string_view text) {
  std::vector<std::string_view> f;
  std::size_t start = 0;
  while (true) {
    const std::size_t colon = text.find(':', start);
    f.push_back(text.substr(start, colon == std::string_view::npos ? colon : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  const std::string_view kind = f[0];
  const auto arity = [&](std::size_t min, std::size_t max) {
    if (f.size() - 1 < min || f.size() - 1 > max) {
      schedule_error(text, std::string(kind) + " takes " +
                               (min == max ? std::to_string(min)
                                           : std::to_string(min) + " to " + std::to_string(max)) +
                               " argument(s), got " + std::to_string(f.size() - 1));
    }
  };
  Schedule s;
  if (kind == "constant") {
    arity(0, 0);
  } else if (kind == "step") {
    arity(2, 2);
    s.kind = ScheduleKind::step;
    s.step_epochs = parse_count(text, f[1], "K");
    s.gamma = parse_real(text, f[2], "GAMMA");
    if (!(s.gamma > 0.0 && s.gamma <= 1.0)) schedule_error(text, "GAMMA must be in (0, 1]");
  } else if (kind == "exp") {
    arity(1, 1);
    s.kind = ScheduleKind::exp;
    s.gamma = parse_real(text, f[1], "GAMMA");
    if (!(s.gamma > 0.0 && s.gamma <= 1.0)) schedule_error(text, "GAMMA must be in (0, 1]");
  } else if (kind == "cosine") {
    arity(0, 1);
    s.kind = ScheduleKind::cosine;
    if (f.size() == 2) s.floor = parse_real(text, f[1], "FLOOR");
    if (s.floor < 0.0) schedule_error(text, "FLOOR must be >= 0");
  } else if (kind == "cyclic") {
    arity(2, 2);
    s.kind = ScheduleKind::cyclic;
    s.max_lr = parse_real(text, f[1], "MAX");
    s.period = parse_real(text, f[2], "PERIOD");
    if (!(s.max_lr > 0.0)) schedule_error(text, "MAX must be > 0");
    if (!(s.period > 0.0)) schedule_error(text, "PERIOD must be > 0 epochs");
  } else if (kind == "restarts") {
    arity(2, 3);
    s.kind = ScheduleKind::restarts;
    s.t0 = parse_count(text, f[1], "T0");
    s.t_mult = parse_count(text, f[2], "TMULT");
    if (f.size() == 4) s.floor = parse_real(text, f[3], "FLOOR");
    if (s.floor < 0.0) schedule_error(text, "FLOOR must be >= 0");
  } else if (kind == "onecycle") {
    arity(0, 2);
    s.kind = ScheduleKind::onecycle;
    if (f.size() >= 2) s.warm = parse_real(text, f[1], "WARM");
    if (f.size() == 3) s.floor = parse_real(text, f[2], "FLOOR");
    if (!(s.warm >= 0.0 && s.warm < 1.0)) schedule_error(text, "WARM must be in [0, 1)");
    if (s.floor < 0.0) schedule_error(text, "FLOOR must be >= 0");
  } else {
    schedule_error(text, "unknown kind \"" + std::string(kind) + "\"");
  }
  return s;
}

std::string print_schedule(const Schedule& s) {
  switch (s.kind) {
    case ScheduleKind::constant:
      return "constant";
    case ScheduleKind::step:
      return "step:" + std::to_string(s.step_epochs) + ":" + format_number(s.gamma);
    case ScheduleKind::exp:
      return "exp:" + format_number(s.gamma);
    case ScheduleKind::cosine:
      return "cosine:" + format_number(s.floor);
    case ScheduleKind::cyclic:
      return "cyclic:" + format_number(s.max_lr) + ":" + format_number(s.period);
    case ScheduleKind::restarts:
      return "restarts:" + std::to_string(s.t0) + ":" + std::to_string(s.t_mult) + ":" +
             format_number(s.floor);
    case ScheduleKind::onecycle:
      return "onecycle:" + format_number(s.warm) + ":" + format_number(s.floor);
  }
  return "constant";
}

}  // namespace augflow::model
