// augflow: dispatch to the subcommands and map errors to exit codes.
//   0 success, 1 a runtime failure (unreadable data, I/O), 2 a usage or spec error.
#include <exception>
#include <iostream>

#include "apps/check_args.hpp"
#include "apps/commands.hpp"
#include "common/error.hpp"

int main(int argc, char** argv) {
  augflow::apps::CommandLine app{
      "augflow: train, evaluate and run image classifiers on CPU machines, with augmentation.\n"
      "Subcommands: train (train a classifier), eval (test a model on labelled data), predict (label new\n"
      "images), export (write a model as ONNX), search (hyperparameter search), preview (see what training\n"
      "sees), bench (measure speed)."};
  app.require_subcommand(1);
  app.set_version_flag("--version", "augflow " AUGFLOW_VERSION_STRING);
  augflow::apps::add_train_command(app);
  augflow::apps::add_eval_command(app);
  augflow::apps::add_predict_command(app);
  augflow::apps::add_export_command(app);
  augflow::apps::add_search_command(app);
  augflow::apps::add_preview_command(app);
  augflow::apps::add_bench_command(app);
  app.take_check_args_flag(argc, argv);  // hidden: parse only (docs test)
  try {
    app.parse(argc, argv);
  } catch (const augflow::apps::ArgsChecked&) {
    std::cout << "ok\n";
    return 0;
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return 2;
  } catch (const augflow::SpecError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const augflow::ConfigError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  } catch (const augflow::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
