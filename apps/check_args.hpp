// The augflow command's CLI::App, with a hidden parse-only mode: `augflow --check-args
// SUBCOMMAND [OPTIONS]` parses and validates the command line as a real run would (unknown and
// required options included), parses the specs the subcommand was given, and runs nothing. The
// documentation test (tests/docs_test.sh) runs every example command line of README.md and
// docs/ through it, so that the documentation cannot show an option or a spec augflow rejects.
#pragma once

#include <CLI/CLI.hpp>

namespace augflow::apps {

/// Thrown in parse-only mode once the command line and its specs are checked; main() then
/// prints "ok" and exits 0.
struct ArgsChecked {};

class CommandLine : public CLI::App {
 public:
  using CLI::App::App;
  /// When argv[1] is --check-args: removes it and turns the parse-only mode on.
  void take_check_args_flag(int& argc, char** argv);

 protected:
  /// Runs after all parsing and validation, before any subcommand's callback: in parse-only
  /// mode, parses the chosen subcommand's specs (SpecError/ConfigError on failure) and throws
  /// ArgsChecked.
  void pre_callback() override;

 private:
  bool check_only_ = false;
};

}  // namespace augflow::apps
