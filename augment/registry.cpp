#include "augment/registry.hpp"

namespace augflow::augment {

std::span<const StepInfo> step_registry() {
  static const std::vector<StepInfo> steps = [] {
    std::vector<StepInfo> all;
    add_flip_steps(all);
    add_crop_steps(all);
    add_color_steps(all);
    add_affine_steps(all);
    add_erase_steps(all);
    add_view_steps(all);
    add_normalize_steps(all);
    return all;
  }();
  return steps;
}

const StepInfo* find_step(std::string_view name) {
  for (const auto& step : step_registry())
    if (step.name == name) return &step;
  return nullptr;
}

}  // namespace augflow::augment
