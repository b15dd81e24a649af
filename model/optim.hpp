// Optimizers (how a gradient becomes a parameter update) and learning-rate schedules (what the
// learning rate is at each point of training).
//
// Optimizer contract:
// - step(params, lr) updates every Param's value from its grad with learning rate lr and then
//   ZEROES the grads (llm.c's zero_grad folded into the step: backward and the regularizer only
//   add into grads). lr must be finite and >= 0.
// - Per-parameter buffers are keyed by Param::name, created (zero) on a parameter's first step,
//   so names must be unique within one step (ConfigError otherwise) and a buffer's shape must
//   match its parameter's (ShapeError otherwise, e.g. a checkpoint of another model).
// - state() returns every buffer as a named tensor copy plus the step count, and
//   load_state(state()) restores them exactly (bit for bit): "velocity/<param>" (momentum,
//   nesterov), "adam_m/<param>" and "adam_v/<param>" (adam, adamw), and "step", a 1-element
//   tensor holding the number of steps taken (exact up to 2^24 = 16,777,216 steps; Adam's bias
//   correction is exactly 1 in float long before that).
// - All arithmetic is float32 elementwise in the order of the params list: deterministic.
//
// The update rules (g = grad, α = lr):
//   sgd        W ← W − αg
//   momentum   v ← μv − αg;  W ← W + v            (the "classic" form with α inside v, as in
//              Sutskever et al. 2013 and CS231n; a change of α affects new gradients only)
//   nesterov   v_prev ← v;  v ← μv − αg;  W ← W − μ v_prev + (1 + μ) v
//              (CS231n's form of Nesterov's accelerated gradient, evaluated at the current W)
//   adam       m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  t ← t + 1
//              W ← W − α m̂ / (sqrt(v̂) + ε),  m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)  (Kingma & Ba 2015)
//   adamw      W ← W − α d W for params with regularized == true (decoupled weight decay,
//              Loshchilov & Hutter 2019), then the adam update from g alone. The decay is scaled
//              by the scheduled lr, as in PyTorch's AdamW. See model/regularizer.hpp for why.
//
// Schedules: see Schedule below and parse_schedule for the string grammar.
//
// API: public, part of augflow::model; installed as <augflow/model/optim.hpp>.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "augflow/model/layer.hpp"

namespace augflow::model {

// ---------------------------------------------------------------------------------------------
// Optimizers

struct OptimizerOptions {
  double momentum = 0.9;       ///< μ in [0, 1) for momentum and nesterov
  double beta1 = 0.9;          ///< Adam's first-moment decay, in [0, 1)
  double beta2 = 0.999;        ///< Adam's second-moment decay, in [0, 1)
  double epsilon = 1e-8;       ///< Adam's denominator floor, > 0
  double weight_decay = 0.0;   ///< AdamW's decoupled decay d >= 0 (adamw only: with the other
                               ///< optimizers use the L2 regularizer, d = 2λ)
};

/// Named optimizer state, sorted by name: what a checkpoint saves.
using OptimizerState = std::map<std::string, Tensor>;

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  /// "sgd", "momentum", "nesterov", "adam" or "adamw".
  virtual std::string name() const = 0;
  /// Updates values from grads with learning rate `lr`, then zeroes the grads.
  void step(const std::vector<Param*>& params, float lr);
  /// Number of steps taken (restored by load_state).
  std::uint64_t steps() const { return steps_; }

  /// Copies of all buffers and the step count (see the contract above).
  OptimizerState state() const;
  /// Replaces all buffers and the step count with `state` (from state() of an optimizer of the
  /// same kind). Throws ConfigError on a missing "step", an unknown key or a bad tensor.
  void load_state(const OptimizerState& state);

 protected:
  /// Buffer names of this optimizer ("velocity", or "adam_m" and "adam_v"); empty for sgd.
  virtual std::vector<std::string> buffer_names() const = 0;
  /// Updates one parameter; `buffers` holds one zero-initialised tensor per buffer name, of the
  /// parameter's size; `t` is the 1-based index of this step.
  virtual void update(Param& p, std::vector<Tensor>& buffers, float lr, std::uint64_t t) = 0;

 private:
  void check_step(const std::vector<Param*>& params, const std::vector<std::string>& names,
                  std::uint64_t t);

  struct Slot {
    std::vector<Tensor> buffers;
    std::uint64_t last_step = 0;  // detects two params with one name in the same step
  };
  std::map<std::string, Slot> slots_;  // by Param::name
  std::uint64_t steps_ = 0;
};

/// The accepted optimizer names, in the order of the help text.
const std::vector<std::string>& optimizer_names();

/// Builds "sgd", "momentum", "nesterov", "adam" or "adamw". Throws ConfigError for an unknown
/// name (listing the accepted ones), out-of-range options, or weight_decay != 0 with an
/// optimizer other than adamw.
std::unique_ptr<Optimizer> make_optimizer(std::string_view name,
                                          const OptimizerOptions& options = {});

// ---------------------------------------------------------------------------------------------
// Learning-rate schedules
//
// A schedule is a function of where the run is. Two equivalent views of that point:
// - in epochs: t = epoch + fraction, with `epoch` the 0-based index of the current epoch and
//   `fraction` in [0, 1) the part of it already done (batch / batches), so smooth schedules
//   change every step; T = total epochs;
// - as progress p = t / T in [0, 1] of a run laid over T epochs (lr_at). This is how budget
//   runs (augflow train --budget, --budget-epochs) drive a schedule: p comes from the step count
//   or the clock, and the epoch counts in the grammar below are read as p·T epochs, T being the
//   run's length in epochs (--budget-epochs) or its epoch bound (--epochs with --budget).
// The base learning rate (e.g. --lr) is an argument, so a schedule is a pure function of its
// spec.
//
//   constant                     base
//   step:K:GAMMA                 base · GAMMA^floor(epoch / K)        (per epoch)
//   exp:GAMMA                    base · GAMMA^epoch                   (per epoch)
//   cosine[:FLOOR]               FLOOR + (base − FLOOR)(1 + cos(π t / T)) / 2; FLOOR at t >= T
//                                (Loshchilov & Hutter 2017 without restarts; FLOOR default 0)
//   cyclic:MAX:PERIOD            triangular (Smith 2017): from base up to MAX at mid-period and
//                                back to base at the end of every PERIOD epochs
//   restarts:T0:TMULT[:FLOOR]    SGDR (Loshchilov & Hutter 2017): cosine from base to FLOOR over
//                                a cycle of T_i epochs, then restart at base; T_0 = T0,
//                                T_{i+1} = TMULT · T_i. With TMULT = 1 this is the snapshot
//                                ensemble schedule (Huang et al. 2017).
//   onecycle[:WARM[:FLOOR]]      one cycle over the whole run (Smith & Topin 2019, "super-
//                                convergence"): linear from base/25 up to base (the peak) over
//                                the first WARM of the run (default 0.3, PyTorch's pct_start;
//                                25 is its div_factor), then cosine down to FLOOR (default 0)
//                                at p = 1. A function of p alone.
//
// Grammar: fields separated by ':'; K, T0, TMULT are integers >= 1; GAMMA in (0, 1];
// FLOOR >= 0; MAX > 0; PERIOD > 0 (epochs, may be fractional); WARM in [0, 1). Numbers in C
// form ("1e-5"). A FLOOR above base or a MAX below base is a ConfigError when the rate is
// computed.
//
// Warm-up (warmup_factor) is separate from the grammar and composes with every schedule: the
// rate is multiplied by a linear ramp over the first part of the run.

enum class ScheduleKind { constant, step, exp, cosine, cyclic, restarts, onecycle };

struct Schedule {
  ScheduleKind kind = ScheduleKind::constant;
  int step_epochs = 1;     ///< step: K
  double gamma = 1.0;      ///< step, exp: the factor
  double floor = 0.0;      ///< cosine, restarts, onecycle: the lowest rate
  double max_lr = 0.0;     ///< cyclic: the highest rate
  double period = 1.0;     ///< cyclic: period in epochs
  int t0 = 1;              ///< restarts: length of the first cycle in epochs
  int t_mult = 1;          ///< restarts: growth factor of the cycle length
  double warm = 0.3;       ///< onecycle: the fraction of the run spent rising to the peak

  /// The learning rate at (epoch, fraction) of a run of `total_epochs` starting from `base_lr`.
  double lr(double base_lr, int epoch, double fraction, int total_epochs) const;

  /// The learning rate at progress p in [0, 1] of a run laid over `total_epochs` (> 0, may be
  /// fractional) epochs: the same function at t = p · total_epochs. At p = 1 every schedule is
  /// at its end value (cosine and onecycle at FLOOR).
  double lr_at(double base_lr, double progress, double total_epochs) const;

  /// The numbers of completed epochs after which a cycle ends (the rate is at its low point
  /// and a snapshot is taken): restarts T0, T0 + T0·TMULT, ... and cyclic PERIOD, 2·PERIOD, ...
  /// (those that are whole numbers), up to total_epochs; e.g. restarts:10:2 over 70 epochs
  /// gives {10, 30, 70}. A cycle cut short by the end of training is not listed. Schedules
  /// without cycles have one cycle, the whole run: {total_epochs}.
  std::vector<int> cycle_ends(int total_epochs) const;

  bool operator==(const Schedule&) const = default;

 private:
  /// The rate at t = epoch + fraction of `total_epochs`; both public forms land here, so an
  /// epoch run gives the values it always gave.
  double value(double base_lr, int epoch, double fraction, double total_epochs) const;
};

/// The warm-up multiplier at progress p of the run: a linear ramp p / warmup up to 1 at
/// p = warmup, then 1 (Goyal et al. 2017, "gradual warmup"). warmup in [0, 1); 0 means none
/// (exactly 1 everywhere). Callers pass the progress a step reaches (its end), so the first
/// step already moves the weights, by a small rate. Throws ConfigError outside [0, 1).
double warmup_factor(double progress, double warmup);

/// Parses the grammar above. Throws ConfigError naming the text and the accepted forms.
Schedule parse_schedule(std::string_view text);

/// Canonical text with every field: parse_schedule(print_schedule(s)) == s.
std::string print_schedule(const Schedule& schedule);

}  // namespace augflow::model
