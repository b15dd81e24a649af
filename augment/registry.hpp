// The explicit list of every spec step by name (no static self-registration: static builds
// lose such entries, as Caffe learned). Parser, printer, JSON form, --help and the generic tests
// all walk this list.
//
// API: public, part of augflow::augment; installed as <augflow/augment/registry.hpp>.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "augflow/augment/args.hpp"
#include "augflow/augment/transform.hpp"

namespace augflow::augment {

enum class StepKind {
  train,      ///< a random Transform
  view,       ///< a deterministic test-time view set (views.hpp)
  normalize,  ///< the final 8-bit HWC -> float CHW conversion (normalize.hpp)
};

struct StepInfo {
  std::string name;
  StepKind kind;
  std::string help;
  std::vector<ParamSpec> params;
  /// Builds and validates a Transform (train steps only; null for the others).
  std::function<TransformPtr(const Args&)> make;
};

/// Every step, in the order --help lists them.
std::span<const StepInfo> step_registry();
/// The step called `name`, or nullptr.
const StepInfo* find_step(std::string_view name);

// Registration lists of each family, called by step_registry() only.
void add_flip_steps(std::vector<StepInfo>& steps);
void add_crop_steps(std::vector<StepInfo>& steps);
void add_color_steps(std::vector<StepInfo>& steps);
void add_affine_steps(std::vector<StepInfo>& steps);
void add_erase_steps(std::vector<StepInfo>& steps);
void add_view_steps(std::vector<StepInfo>& steps);
void add_normalize_steps(std::vector<StepInfo>& steps);

}  // namespace augflow::augment
