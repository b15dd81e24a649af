// augflow search: random (or grid) hyperparameter search, coarse to fine, several trials at once.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>

#include "apps/commands.hpp"
#include "common/communicator.hpp"
#include "common/error.hpp"
#include "pipeline/search.hpp"

namespace augflow::apps {
namespace {

std::atomic<bool> interrupt_requested{false};

extern "C" void on_search_interrupt(int) { interrupt_requested.store(true); }

struct SearchCommand {
  pipeline::SearchConfig config;
  std::string resume;
  CLI::Option* parallel = nullptr;
  CLI::Option* threads = nullptr;
};

const char* kFooter =
    "Search space (--space): parameters separated by spaces, each NAME=DIST:\n"
    "  log(LO,HI)       log-uniform, for scale parameters (learning rate, regularization): every\n"
    "                   decade is sampled equally often. 0 < LO < HI\n"
    "  uniform(LO,HI)   uniform, e.g. dropout=uniform(0.2,0.7)\n"
    "  int(LO,HI)       a whole number from LO to HI\n"
    "  choice(A,B,...)  one of the values, e.g. hidden=choice(50,100,200) or optimizer=choice(sgd,adam)\n"
    "What a parameter sets: lr (learning rate), reg (strength of --reg's kind, L2 when --reg is none),\n"
    "weight_decay, ema, batch, optimizer, schedule; any other NAME fills the placeholder {NAME} in --model\n"
    "or --aug, e.g. --model 'fc{hidden}-relu-drop{dropout}-fc10'. A parameter used nowhere, or a\n"
    "placeholder without a parameter, is an error.\n"
    "\n"
    "Stages: stage 1 runs --trials trials of --epochs epochs. Each later stage zooms in: every range\n"
    "shrinks to the span of the best 10% of the previous stage's trials (at least 3), widened by a quarter\n"
    "of that span (in log space for log parameters) and kept inside the previous range; choices keep the\n"
    "values the best trials used. A later stage runs half the trials for twice the epochs (the same\n"
    "budget). The ranges chosen are printed. When a stage's best value lies within 10% of a border of its\n"
    "range, a warning says so: the best may lie outside; widen the range.\n"
    "\n"
    "Each finished trial prints one line: val_acc: 0.412000, lr: 1.405206e-04, reg: 4.793564e-01, (1 / 100)\n"
    "Trial i of stage s trains with its own seed (from --seed, s and i, recorded in the results) and is\n"
    "validated on the same samples as every other trial.\n"
    "\n"
    "DIR holds results.json (settings, stages with their ranges and warnings, every trial sorted by\n"
    "validation accuracy, best), results.csv (the same table), scatter.png (validation accuracy over each\n"
    "pair of ranged parameters), and stageS/trialNNN/ run folders (config.json, metrics.csv, summary.json,\n"
    "curves.png, train.log; best.ckpt and last.ckpt only for the --keep best trials).\n"
    "Ctrl-C stops; running the same command again (or --resume DIR) skips the finished trials.\n"
    "\n"
    "Several machines: mpirun -np N --hostfile HOSTS --bind-to none augflow search ... hands the trials to\n"
    "the N processes as they free up (one process per machine, --threads = its cores; data and --out on\n"
    "storage every machine sees at the same path). Same lines and results as in one process; a killed\n"
    "job resumes with --resume DIR, with any number of processes. See docs/distributed.md.\n"
    "\n"
    "Example (the lecture's coarse-to-fine search of the two-layer net; docs/search.md: 86.4% after stage 1,\n"
    "88.0% after stage 2 on the held-out tenth of Fashion-MNIST's training set):\n"
    "  augflow search --train fashion-mnist --val-split 0.1 --model twolayer --aug 'normalize(none)' \\\n"
    "      --space 'lr=log(1e-6,1e-1) reg=log(1e-5,1e5)' --trials 100 --epochs 5 --stages 2 \\\n"
    "      --parallel 2 --out runs/fm-search\n";

void run_search(const SearchCommand& command) {
  single_threaded_opencv();
  pipeline::SearchConfig config = command.config;
  if (!command.resume.empty()) {
    config = pipeline::read_search_config(command.resume);
    // How fast is the machine's business, not the search's: these may change on resume.
    if (command.parallel->count()) config.parallel = command.config.parallel;
    if (command.threads->count()) config.base.threads = command.config.base.threads;
  } else if (config.base.train.empty() || config.space.empty() || config.out.empty()) {
    throw ConfigError("augflow search needs --train SRC, --space TEXT and --out DIR (or --resume DIR)");
  }
  interrupt_requested.store(false);
  const auto start = std::chrono::steady_clock::now();
  std::signal(SIGINT, on_search_interrupt);
  std::signal(SIGTERM, on_search_interrupt);
  Communicator& world = world_communicator();
  const auto result = pipeline::search(
      config, [](const std::string& line) { std::cout << line << std::endl; }, &interrupt_requested, world);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (!world.root()) {
    if (result.interrupted) std::exit(130);
    return;  // rank 0 reports
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  char rate[96];
  std::snprintf(rate, sizeof rate, "%d trials in %.1f s (%.0f trials/hour, --parallel %d)", result.trials_run, seconds,
                seconds > 0 ? result.trials_run * 3600.0 / seconds : 0.0, config.parallel);
  std::cout << rate << (world.size() > 1 ? " over " + std::to_string(world.size()) + " processes" : std::string())
            << "\n";
  if (result.interrupted) {
    std::cout << "interrupted; the finished trials are saved. Continue with: augflow search --resume " << config.out
              << "\n";
    std::exit(130);  // the shell's convention for a run ended by Ctrl-C
  }
  const auto& best = result.trials.front();
  char line[64];
  std::snprintf(line, sizeof line, "best val_acc %.6f", best.val_accuracy);
  std::cout << line << " (stage " << best.stage << ", trial " << best.index << ") in " << config.out << "/"
            << best.run_dir << "\nresults: " << config.out << "/results.json, results.csv, scatter.png\n";
}

}  // namespace

void add_search_command(CLI::App& app) {
  auto command = std::make_shared<SearchCommand>();
  auto* s = &command->config;
  auto* c = &s->base;
  c->model = "twolayer";
  c->epochs = 5;
  c->cache_mb = 1024;  // trials share it: a folder is decoded once per search, not per trial and epoch
  auto* cmd = app.add_subcommand(
      "search",
      "Hyperparameter search: train many short runs (trials) with hyperparameters drawn at random (or on a\n"
      "grid) from --space, several at once, coarse to fine, and rank them by validation accuracy. Example:\n"
      "  augflow search --train fashion-mnist --model twolayer --space 'lr=log(1e-6,1e-3) reg=log(1e-5,1e5)'\n"
      "      --trials 100 --epochs 5 --out runs/search");
  cmd->add_option("--train", c->train, "training data: an image folder, a list file or fashion-mnist (as in train)");
  cmd->add_option("--val", c->val, "validation data (same forms); default: split --val-split off --train");
  cmd->add_option("--val-split", c->val_split,
                  "stratified fraction of --train held out for validation: the same samples for every trial")
      ->capture_default_str();
  cmd->add_option("--model", c->model,
                  "model spec or preset, with {NAME} placeholders for space parameters, e.g. "
                  "'fc{hidden}-relu-drop{dropout}-fc10'")
      ->capture_default_str();
  cmd->add_option("--aug", c->aug, "augmentation spec (as in train; may hold {NAME} placeholders)");
  cmd->add_option("--space", s->space,
                  "the search space: 'lr=log(1e-6,1e-3) reg=log(1e-5,1e5) dropout=uniform(0.2,0.7) "
                  "hidden=choice(50,100,200)' (see below; required unless --resume)");
  cmd->add_option("--trials", s->trials, "trials of stage 1 (with --grid: about this many grid points)")
      ->capture_default_str();
  cmd->add_option("--epochs", c->epochs, "epochs of each stage-1 trial (a later stage trains twice as long as the one before)")
      ->capture_default_str();
  cmd->add_option("--stages", s->stages, "coarse-to-fine stages: each zooms in around the previous stage's best trials")
      ->capture_default_str();
  cmd->add_flag("--grid", s->grid,
                "grid search instead of random search (for comparison: with the same trials, random search tries "
                "more distinct values of each parameter)");
  command->parallel = cmd->add_option("--parallel", s->parallel,
                                      "trials trained at once; --threads is split between them (each trial in "
                                      "its own TBB arena; a trial left with one thread loads its images on its "
                                      "training thread). Set it to --threads for small models such as the "
                                      "two-layer net: one trial cannot keep two cores busy. Results do not "
                                      "depend on it")
                          ->capture_default_str();
  command->threads =
      cmd->add_option("--threads", c->threads, "threads of the whole search (model and loaders)")->capture_default_str();
  cmd->add_option("--keep", s->keep,
                  "keep best.ckpt and last.ckpt of this many best trials (for augflow eval ensembles); the other "
                  "trials keep their metrics only")
      ->capture_default_str();
  cmd->add_option("--batch", c->batch, "samples per batch (unless the space sets batch)")->capture_default_str();
  cmd->add_option("--optimizer", c->optimizer, "sgd, momentum, nesterov, adam or adamw (unless the space sets it)")
      ->capture_default_str();
  cmd->add_option("--lr", c->lr, "learning rate (unless the space sets lr)")->capture_default_str();
  cmd->add_option("--schedule", c->schedule, "learning-rate schedule, as in train")->capture_default_str();
  cmd->add_option("--reg", c->regularizer,
                  "weight penalty: none, l2:L, l1:L, elastic:L[:BETA]; with reg in the space, its kind (and BETA) "
                  "with the sampled strength")
      ->capture_default_str();
  cmd->add_option("--weight-decay", c->weight_decay, "AdamW's decoupled weight decay")->capture_default_str();
  cmd->add_option("--early-stop", c->early_stop, "stop a trial after this many epochs without a better validation "
                                                  "accuracy (0: off)")
      ->capture_default_str();
  cmd->add_option("--ema", c->ema, "Polyak/EMA decay (0: off), as in train")->capture_default_str();
  cmd->add_option("--seed", c->seed, "search seed: the split, every trial's parameters and seed")->capture_default_str();
  cmd->add_option("--cache", c->cache_mb,
                  "decoded-image cache shared by all trials, in MB: each image file is decoded once for the whole\n"
                  "search while the budget lasts, then kept (not augmented); images beyond it are decoded from\n"
                  "disk as they come; 0: off (IDX data such as Fashion-MNIST is in memory anyway)")
      ->capture_default_str();
  cmd->add_option("--out", s->out, "the search folder (results.json, results.csv, scatter.png, stageS/trialNNN/); "
                                   "an existing one of the same search is resumed");
  cmd->add_option("--resume", command->resume,
                  "continue the search in DIR with its settings (only --parallel and --threads may change)");
  cmd->footer(kFooter);
  cmd->callback([command] { run_search(*command); });
}

}  // namespace augflow::apps
