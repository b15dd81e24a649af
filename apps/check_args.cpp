// `augflow --check-args`: the parse-only mode of the command line (see check_args.hpp).
#include <optional>
#include <string>

#include "apps/check_args.hpp"
#include "apps/commands.hpp"
#include "augment/spec.hpp"
#include "model/config.hpp"
#include "model/search_space.hpp"

namespace augflow::apps {
namespace {

/// The first value of option `name` when the command line gave it.
std::optional<std::string> given(CLI::App& cmd, const std::string& name) {
  const CLI::Option* option = cmd.get_option_no_throw(name);
  if (!option || option->count() == 0 || option->results().empty()) return std::nullopt;
  return option->results().front();
}

bool names_a_model_file(const std::string& text) {
  for (const char* ext : {".ckpt", ".onnx"})
    if (text.size() > std::string(ext).size() && text.ends_with(ext)) return true;
  return false;
}

/// Parses what the subcommand's own run would parse first: the augmentation spec (--aug), the
/// view spec (--views, unless one of eval's named view sets), the model spec of train and
/// search (--model, unless it names a model file), the search space (--space), the scales.
/// Throws the parsers' SpecError/ConfigError, which main() maps to exit code 2.
void check_specs(CLI::App& cmd) {
  if (const auto aug = given(cmd, "--aug")) augment::parse_pipeline_any(*aug);
  if (const auto views = given(cmd, "--views"))
    if (*views != "center" && *views != "tencrop" && *views != "multiscale") augment::parse_views(*views);
  if (const auto space = given(cmd, "--space")) model::parse_search_space(*space);
  if (const auto scales = given(cmd, "--scales")) parse_scales(*scales);
  const std::string name = cmd.get_name();
  if (name == "train" || name == "search")
    if (const auto spec = given(cmd, "--model"); spec && !names_a_model_file(*spec))
      model::parse_model_spec(*spec, 10);
}

}  // namespace

void CommandLine::take_check_args_flag(int& argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) != "--check-args") return;
  for (int i = 1; i + 1 < argc; ++i) argv[i] = argv[i + 1];
  --argc;
  check_only_ = true;
}

void CommandLine::pre_callback() {
  if (!check_only_) return;
  CLI::App* command = this;
  while (!command->get_subcommands().empty()) command = command->get_subcommands().front();
  check_specs(*command);
  throw ArgsChecked{};
}

}  // namespace augflow::apps
