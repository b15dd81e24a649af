// augflow train: train a model from an image folder, a list file or Fashion-MNIST.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "common/communicator.hpp"
#include "common/error.hpp"
#include "pipeline/trainer.hpp"

namespace augflow::apps {
namespace {

std::atomic<bool> interrupt_requested{false};

extern "C" void on_interrupt(int) { interrupt_requested.store(true); }

struct TrainCommand {
  pipeline::TrainConfig config;
  std::string resume;
};

void run_train(const TrainCommand& command) {
  single_threaded_opencv();
  pipeline::TrainConfig config = command.config;
  if (!command.resume.empty()) {
    const std::string path = command.resume + "/config.json";
    std::ifstream in(path);
    if (!in) throw IoError(path + ": cannot read (is " + command.resume + " a run folder of augflow train?)");
    nlohmann::json json;
    try {
      json = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(path, std::string("not valid JSON: ") + e.what());
    }
    config = pipeline::train_config_from_json(json);
    config.out = command.resume;
  } else if (config.train.empty() || config.out.empty()) {
    throw ConfigError("augflow train needs --train SRC and --out RUNDIR (or --resume RUNDIR)");
  }
  // Ctrl-C: finish the current batch, join the loader, keep last.ckpt (the last whole epoch).
  interrupt_requested.store(false);
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);
  // On a terminal a live progress line, redrawn at most 5 times a second; otherwise only the
  // per-epoch log lines (logs stay readable).
  const bool terminal = ::isatty(STDOUT_FILENO) != 0 && world_communicator().root();
  auto last_draw = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  pipeline::ProgressSink progress;
  if (terminal) {
    progress = [&last_draw](const pipeline::TrainProgress& p) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last_draw < std::chrono::milliseconds(200) && p.batch != p.batches) return;
      last_draw = now;
      const long eta = static_cast<long>(p.eta_seconds);
      std::printf("\r\033[Kepoch %d/%d  batch %zu/%zu  loss %.4f  %.0f images/s  ETA %ld:%02ld", p.epoch, p.epochs,
                  p.batch, p.batches, p.loss, p.images_per_second, eta / 60, eta % 60);
      std::fflush(stdout);
    };
  }
  auto log = [terminal](const std::string& line) {
    if (terminal) std::printf("\r\033[K");
    std::cout << line << std::endl;
  };
  // Under mpirun every process trains its share of each batch; rank 0 prints and writes.
  Communicator& world = world_communicator();
  const auto summary =
      pipeline::train(config, log, !command.resume.empty(), &interrupt_requested, progress, &world);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (!world.root()) {
    if (summary.interrupted) std::exit(130);
    return;
  }
  if (summary.interrupted) {
    std::cout << "interrupted; continue with: augflow train --resume " << config.out << "\n";
    std::exit(130);  // the shell's convention for a run ended by Ctrl-C
  }
  std::cout << "best validation accuracy " << summary.best_val_accuracy << " at epoch " << summary.best_epoch
            << " of " << summary.epochs_run << "; results in " << config.out << "\n";
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto command = std::make_shared<TrainCommand>();
  auto* c = &command->config;
  // The recipe a newcomer gets without flags (measured, see the README's fast recipes): one cycle
  // with warm-up rather than a constant rate, and label smoothing. The library's TrainConfig keeps
  // the plain defaults; `--schedule constant --label-smoothing 0 --val-views center` is the plain
  // recipe here too. Validation averages the mirror when training flips: what eval reports.
  c->schedule = "onecycle";
  c->label_smoothing = 0.1;
  c->val_views = pipeline::kAutoValViews;
  auto* cmd = app.add_subcommand(
      "train",
      "Train a classifier: the loader streams augmented batches into the model; each epoch is\n"
      "validated, logged to RUNDIR/metrics.csv and checkpointed (last.ckpt, best.ckpt);\n"
      "RUNDIR/summary.json holds the result. To nudge a running model, write RUNDIR/control.json: it is\n"
      "re-read at every epoch start; {\"lr\": 3e-4} sets the base learning rate, {\"stop\": true} ends the run.\n"
      "Examples:\n"
      "  augflow train --train fashion-mnist --model cnn-small --epochs 5 --out runs/fm\n"
      "  augflow train --train photos/ --init resnet18.onnx --freeze -1 --epochs 3 --out runs/ft\n"
      "Under mpirun -np N (one process per machine), training is data-parallel: each process loads and\n"
      "computes its share of every batch, and the run ends with the weights of the same run in one process.");
  cmd->add_option("--train", c->train, "training data: an image folder (one sub-folder per class), a list file "
                                        "(path,label lines) or fashion-mnist (required unless --resume)");
  cmd->add_option("--val", c->val, "validation data (same forms); default: split --val-split off --train");
  cmd->add_option("--val-split", c->val_split, "stratified fraction of --train held out for validation")
      ->capture_default_str();
  auto* model_option = cmd->add_option("--model", c->model,
                                       "model spec: compact tokens (conv32k3p1-bn-relu-pool2-fc10 ...), JSON, a preset\n"
                                       "(twolayer, mlp, cnn-small, resnet-mini, resnet-photo), or auto: chosen from the\n"
                                       "data (see 'Defaults that follow the data' below); with --init, default: the file's")
                           ->capture_default_str();
  cmd->add_option("--init", c->init,
                  "start from the weights of a trained model instead of random ones (fine-tuning): an augflow\n"
                  "checkpoint (.ckpt) or an ONNX file, e.g. a torchvision ResNet exported by PyTorch. Without\n"
                  "--model the file's network is trained; when the data has another number of classes its fc head\n"
                  "is replaced by a fresh one. Combine with --freeze to train only the head");
  cmd->add_option("--aug", c->aug,
                  "augmentation spec; default: chosen from the data (see 'Defaults that follow the data'\n"
                  "below). Validation uses its deterministic counterpart (centre crop, same normalize)");
  auto* epochs_option = cmd->add_option("--epochs", c->epochs,
                                        "epochs to train; with --budget an upper bound (default then: none)")
                            ->capture_default_str();
  auto* budget_option = cmd->add_option(
      "--budget", c->budget_minutes,
      "train for this many minutes of wall-clock time (fractions allowed, e.g. 0.5), loading, validation\n"
      "and checkpoints included, and lay the learning-rate schedule over that time: progress is the\n"
      "time spent over the budget, measured as the run goes, so the schedule adapts to the machine's\n"
      "speed. The run ends when the budget is spent, its last steps at the schedule's end value,\n"
      "with a final validation and checkpoint (a last partial epoch counts as an epoch). The same\n"
      "seed gives the same order of batches, but the rates, and so the result, depend on the measured\n"
      "speed: use --budget-epochs for a reproducible run. --epochs N, if given, is an upper bound and\n"
      "the length that epoch-counting schedules (step, exp, cyclic, restarts) refer to; cosine,\n"
      "onecycle and constant need none. --early-stop can still end the run sooner; --resume goes on\n"
      "with the budget that is left");
  auto* budget_epochs_option = cmd->add_option(
      "--budget-epochs", c->budget_epochs,
      "the same in epochs, fractions allowed (e.g. 7.5, which ends mid-epoch, validated and checkpointed):\n"
      "replaces --epochs; progress is counted in steps, so the run is reproducible bit for bit");
  auto* warmup_option = cmd->add_option("--warmup", c->warmup,
                  "warm-up: raise the learning rate linearly from about 0 to the schedule's rate over this\n"
                  "fraction of the run (e.g. 0.05 = the first 5% of the epochs or of the budget), then follow the\n"
                  "schedule; works with every schedule but onecycle, which has its own; 0: none")
      ->capture_default_str();
  cmd->add_option("--label-smoothing", c->label_smoothing,
                  "train against softened targets: the true class gets 1-EPS+EPS/K and every class EPS/K\n"
                  "(K classes; e.g. 0.1), which keeps the model from growing over-confident. The training loss\n"
                  "in metrics.csv includes it; validation loss stays the plain cross-entropy; 0: off")
      ->capture_default_str();
  cmd->add_option("--val-views", c->val_views,
                  "what each validation averages over: center (the centre crop), flip (the centre crop and\n"
                  "its mirror, softmax probabilities averaged, as augflow eval's flip view: twice the validation\n"
                  "compute), or auto: flip when the augmentation flips images (hflip), else center. The best\n"
                  "checkpoint, early stopping and summary.json's accuracies follow it")
      ->capture_default_str();
  cmd->add_option("--batch", c->batch, "samples per batch (the whole batch, also under mpirun)")->capture_default_str();
  cmd->add_option("--chunks", c->chunks,
                  "pieces each batch is cut into for parallel work (1-64): the units that threads and processes\n"
                  "share out. Results depend on it, never on --threads or the number of processes; under mpirun\n"
                  "at most this many processes. Each chunk held keeps a copy of the weight gradients (memory)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--optimizer", c->optimizer, "sgd, momentum, nesterov, adam or adamw")->capture_default_str();
  cmd->add_option("--lr", c->lr, "base learning rate")->capture_default_str();
  auto* schedule_option = cmd->add_option("--schedule", c->schedule,
                  "learning-rate schedule: constant, step:K:GAMMA, exp:GAMMA, cosine[:FLOOR], cyclic:MAX:PERIOD,\n"
                  "restarts:T0:TMULT[:FLOOR], onecycle[:WARM[:FLOOR]] (one cycle: from --lr/25 up to --lr over\n"
                  "the first WARM of the run, default 0.3, then cosine down to FLOOR, default 0). Laid over the\n"
                  "epochs, or over the budget with --budget/--budget-epochs. Default onecycle (with --warmup:\n"
                  "cosine; with --snapshots: cosine cycles); constant is the plain recipe")
      ->capture_default_str();
  cmd->add_option("--reg", c->regularizer,
                  "weight penalty added to the loss: none, l2:LAMBDA (weight decay 2*LAMBDA with SGD), l1:LAMBDA, "
                  "elastic:LAMBDA[:BETA]")
      ->capture_default_str();
  cmd->add_option("--weight-decay", c->weight_decay, "AdamW's decoupled weight decay (with --optimizer adamw)")
      ->capture_default_str();
  cmd->add_option("--early-stop", c->early_stop,
                  "stop after this many epochs without a better validation accuracy (0: off)")
      ->capture_default_str();
  cmd->add_option("--ema", c->ema,
                  "keep Polyak/EMA weights with this decay (e.g. 0.999), validated every epoch too and saved as "
                  "RUNDIR/ema.ckpt; 0: off")
      ->capture_default_str();
  auto* snapshots_option = cmd->add_option("--snapshots", c->snapshots,
                  "snapshot ensemble: save the weights at the ends of the last K learning-rate cycles as\n"
                  "RUNDIR/snapshot-1.ckpt ... snapshot-K.ckpt (give them all to augflow eval --model).\n"
                  "Without --schedule: K cosine cycles over the run (restarts:EPOCHS/K:1); with\n"
                  "restarts:... or cyclic:...: the ends of its cycles; 0: off")
      ->capture_default_str();
  cmd->add_option("--freeze", c->freeze,
                  "keep the first N layers of the model fixed (their weights and batch-norm statistics): train\n"
                  "only the rest, e.g. a new head on a pretrained network (--init). Layer i is token i of the\n"
                  "printed model spec (RUNDIR/config.json's \"model\"); a negative N keeps all but the last -N\n"
                  "layers fixed (-1: train the head alone); 0: train every layer")
      ->capture_default_str();
  cmd->add_option("--seed", c->seed, "run seed: split, order, augmentation, initialisation, dropout masks")
      ->capture_default_str();
  cmd->add_option("--threads", c->threads, "loader threads")->capture_default_str();
  cmd->add_option("--cache", c->cache_mb, "keep decoded training images in memory up to this many MB")
      ->capture_default_str();
  cmd->add_option("--out", c->out,
                  "run folder to create (config.json, metrics.csv, last.ckpt, best.ckpt, summary.json); "
                  "required unless --resume");
  cmd->add_option("--resume", command->resume,
                  "continue the run in RUNDIR from its last.ckpt with its config.json (Ctrl-C stops a run "
                  "cleanly after its current batch, mid-epoch too; the resumed run goes on from the next batch "
                  "and ends with the same weights as an uninterrupted one)");
  cmd->footer(
      "Defaults that follow the data (without --model or --aug): augflow reads the headers of up to 256\n"
      "training images (nothing is decoded) and takes the median short side m:\n"
      "  IDX data (Fashion-MNIST), S x S: cnn-small, 'pad_crop(2,S) | hflip | normalize(none)'\n"
      "  m <= 64 (thumbnails): S = m rounded to a multiple of 4; cnn-small,\n"
      "     'center_crop(S,S) | pad_crop(P,S) | hflip | normalize(imagenet)' with P = max(2, S/8)\n"
      "  m >= 256 (photos): resnet-photo, 'hflip | scale_crop(256,480,224) |\n"
      "     jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)'\n"
      "  in between: the same at crop C = the multiple of 16 up to 7/8 of m, short side in\n"
      "     [8C/7, 15C/7]; cnn-small below C = 96, resnet-photo from there\n"
      "The choice and the reason are printed when the run starts and recorded in RUNDIR/config.json.\n\n" +
      aug_spec_help());
  cmd->callback([command, model_option, epochs_option, budget_option, budget_epochs_option, schedule_option,
                 warmup_option, snapshots_option] {
    // Without --schedule, options that need another schedule than the default one cycle get it:
    // --warmup goes with cosine (one cycle has its own warm-up), --snapshots with the cosine
    // cycles it lays over the run (from the constant schedule, see --snapshots).
    if (schedule_option->count() == 0) {
      if (snapshots_option->count() > 0 && command->config.snapshots > 0)
        command->config.schedule = "constant";
      else if (warmup_option->count() > 0 && command->config.warmup > 0)
        command->config.schedule = "cosine";
    }
    // --init without --model trains the file's own network.
    if (!command->config.init.empty() && model_option->count() == 0) command->config.model.clear();
    // --budget alone: the clock ends the run, no epoch bound.
    if (budget_option->count() > 0 && epochs_option->count() == 0) command->config.epochs = 0;
    if (budget_epochs_option->count() > 0 && epochs_option->count() > 0)
      throw ConfigError("--budget-epochs replaces --epochs: give one of them");
    run_train(*command);
  });
}

}  // namespace augflow::apps
