// augflow: dispatch to the subcommands and map errors to exit codes.
//   0 success, 1 a runtime failure (unreadable data, I/O), 2 a usage or spec error.
// Under mpirun the processes of the job share one communicator (common/communicator.hpp); an
// error on any of them ends the whole job with its exit code, so none waits for a dead peer.
#include <exception>
#include <iostream>
#include <memory>
#include <string>

#include "apps/check_args.hpp"
#include "apps/commands.hpp"
#include "common/communicator.hpp"
#include "common/error.hpp"

namespace {
std::unique_ptr<augflow::Communicator> world;

/// The subcommand named on the command line (the first word that is not an option, with the
/// next one for bench: "bench exchange"), or "".
std::string subcommand_of(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (argv[i][0] != '-') {
      const std::string command = argv[i];
      return command == "bench" && i + 1 < argc ? command + " " + argv[i + 1] : command;
    }
  return "";
}

/// Prints the error (rank 0 plainly, other ranks naming themselves) and ends the job: with
/// several processes through MPI_Abort, so that the others do not wait for this one.
int fail(const char* what, int status) {
  if (world && world->rank() != 0) std::cerr << "rank " << world->rank() << ": ";
  std::cerr << "error: " << what << "\n";
  if (world && world->size() > 1) world->abort(status);
  return status;
}
}  // namespace

augflow::Communicator& augflow::apps::world_communicator() { return *world; }

int main(int argc, char** argv) {
  try {
    world = augflow::make_world_communicator();
  } catch (const augflow::Error& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
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
    const std::string command = subcommand_of(argc, argv);
    if (world->size() > 1 && command != "search" && command != "train" && command != "bench exchange" &&
        !command.empty())
      throw augflow::ConfigError("augflow " + command + " runs in one process: start it without mpirun (" +
                                 std::to_string(world->size()) +
                                 " processes were started). Under mpirun, augflow train trains data-parallel and "
                                 "augflow search spreads its trials over the processes");
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
    return fail(e.what(), 2);
  } catch (const augflow::ConfigError& e) {
    return fail(e.what(), 2);
  } catch (const augflow::Error& e) {
    return fail(e.what(), 1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  }
  world.reset();  // MPI_Finalize, on every process
  return 0;
}
