// The training loop: data sets and loaders (pipeline) feeding a network (model), epoch by
// epoch, with validation, metrics and checkpoints written to a run folder.
//
// RUNDIR/config.json    every setting of the run (enough to reproduce it)
// RUNDIR/metrics.csv    epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds[,ema_val_loss,
//                       ema_val_accuracy],elapsed_seconds (wall time since the run's start)
// RUNDIR/last.ckpt      the weights after the last finished epoch (atomic writes)
// RUNDIR/best.ckpt      the weights of the epoch with the best validation accuracy
// RUNDIR/curves.png     loss and accuracy per epoch, train vs val
// RUNDIR/ema.ckpt       with --ema: the Polyak/EMA weights after the last epoch (for eval ensembles)
// RUNDIR/snapshot-K.ckpt with --snapshots: the weights at the end of the K-th saved learning-rate
//                       cycle (Huang et al. 2017, snapshot ensembles), for eval ensembles
// RUNDIR/summary.json   best_val_accuracy, best_epoch, epochs_run, final_val_accuracy,
//                       train_images_per_second, skipped_files, stopped_early, budget_seconds,
//                       budget_epochs, budget_spent, train_seconds, elapsed_seconds,
//                       time_to_accuracy [{seconds, epoch, val_accuracy} per validation],
//                       world_size, communication_seconds, ...
// RUNDIR/control.json   optional, written by a person while the run trains: re-read at every
//                       epoch start ({"lr": 3e-4}, {"stop": true}; see apply_control in trainer.cpp)
//
// API: public, part of augflow::pipeline; installed as <augflow/pipeline/trainer.hpp>.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "augflow/model/optim.hpp"
#include "augflow/pipeline/image_cache.hpp"

namespace augflow {
class Communicator;
}

namespace augflow::pipeline {

/// The --model value that asks for the model the data call for (pipeline/defaults.hpp).
inline constexpr const char* kAutoModel = "auto";
/// The --val-views value that follows the training spec (TrainConfig::val_views).
inline constexpr const char* kAutoValViews = "auto";

struct TrainConfig {
  std::string train;            ///< data source (folder, list file, fashion-mnist)
  std::string val;              ///< validation source; empty: split val_split off train
  double val_split = 0.1;       ///< stratified fraction of train used for validation
  /// Seed of that split; unset: `seed`. A search sets it so that all its trials, each with its
  /// own seed, are validated on the same samples.
  std::optional<std::uint64_t> split_seed;
  /// Model spec or preset; kAutoModel: chosen from the data (pipeline/defaults.hpp), or with
  /// `init` the init file's spec (as is an empty one).
  std::string model = kAutoModel;
  std::string aug;              ///< empty: chosen from the data (pipeline/defaults.hpp)
  /// Epochs to train. With budget_minutes: an upper bound (0: none), and the length that the
  /// epoch counts of a schedule (step, exp, cyclic, restarts) refer to. Unused with budget_epochs.
  int epochs = 10;
  /// Time budget in minutes of wall-clock time (loading, validation and checkpoints included);
  /// 0: off. The schedule is laid over the budget: progress is the measured time spent over the
  /// budget (minus a reserve for the final validation), so results depend on the machine's speed.
  double budget_minutes = 0.0;
  /// The same in epochs, fractional allowed (e.g. 7.5); 0: off. Progress is steps taken over
  /// round(budget_epochs · batches per epoch) steps: bit-reproducible. Replaces `epochs`.
  double budget_epochs = 0.0;
  /// Linear warm-up over this fraction of the run, in [0, 1), on top of the schedule; 0: none.
  double warmup = 0.0;
  /// Label smoothing eps in [0, 1) of the training loss (validation stays the plain NLL).
  double label_smoothing = 0.0;
  /// What each validation averages over: "center" (the centre crop), "flip" (the centre crop and
  /// its mirror, softmax probabilities averaged: augflow eval's flip view, twice the validation
  /// compute) or kAutoValViews (flip when the training spec flips images, else center). The
  /// best checkpoint, early stopping and summary.json's accuracies all follow it.
  std::string val_views = "center";
  int batch = 64;
  /// Chunks each batch is cut into (model::ChunkLayout::uniform): the units of parallel work
  /// that threads and processes share out. Results depend on it, never on `threads` or the
  /// number of processes; a data-parallel run has at most this many processes.
  int chunks = 8;
  std::string optimizer = "adam";
  double lr = 1e-3;
  std::string schedule = "constant";
  std::string regularizer = "none";  ///< none | l2:L | l1:L | elastic:L[:BETA]
  double weight_decay = 0.0;         ///< AdamW's decoupled decay
  int early_stop = 0;                ///< patience in epochs without a better val accuracy; 0 = off
  std::uint64_t seed = 0;
  int threads = 2;
  /// The loaders decode and augment on the training thread (LoaderOptions::inline_loading): set
  /// by augflow search for trials that have one core each. Speed only, so not saved.
  bool inline_loading = false;
  std::size_t cache_mb = 0;
  /// A decoded-image cache shared with other runs (augflow search's trials); replaces the run's
  /// own cache_mb cache. Speed only (a search records its cache_mb), so not saved.
  std::shared_ptr<ImageCache> shared_cache;
  double ema = 0.0;                  ///< Polyak/EMA decay of a shadow copy of the weights; 0 = off
  int snapshots = 0;                 ///< snapshot ensemble: save the weights at the last K cycle ends
  /// Fine-tuning: start from the weights of this model file (.ckpt or .onnx, e.g. a network
  /// trained elsewhere) instead of a random initialisation. With `model` empty the file's own
  /// spec is used, its fc head replaced by a fresh one when the data has another class count.
  std::string init;
  /// Fine-tuning: layers [0, freeze) of the model keep their weights and batch-norm statistics
  /// (model::Net::freeze); only the rest is trained. 0: train every layer.
  int freeze = 0;
  std::string out;                   ///< run folder (created)
};

/// Where training stands, for a live progress line (reported after every batch).
struct TrainProgress {
  int epoch = 0;            ///< 1-based
  int epochs = 0;
  std::size_t batch = 0;    ///< 1-based within the epoch
  std::size_t batches = 0;  ///< batches per epoch (estimate)
  double loss = 0;          ///< running mean over the epoch so far
  double images_per_second = 0;
  double eta_seconds = 0;   ///< for the whole run
};
using ProgressSink = std::function<void(const TrainProgress&)>;

/// The epochs (1-based) after which --snapshots K saves a snapshot: the last K ends of the
/// schedule's cycles. With the constant schedule (none given) it is first replaced by K cosine
/// cycles, restarts:E/K:1 (E must then be a multiple of K). Throws ConfigError for schedules
/// without cycles (step, exp, cosine) and when the run has fewer than K cycle ends.
std::vector<int> plan_snapshots(int snapshots, int epochs, model::Schedule& schedule);

/// Every setting as config.json holds it, and back (for --resume).
nlohmann::json to_json(const TrainConfig& config);
TrainConfig train_config_from_json(const nlohmann::json& json);

struct TrainSummary {
  double best_val_accuracy = 0;
  int best_epoch = 0;
  int epochs_run = 0;
  double final_val_accuracy = 0;
  double train_images_per_second = 0;
  std::size_t skipped_files = 0;
  bool stopped_early = false;
  bool interrupted = false;  ///< `stop` was raised (Ctrl-C): last.ckpt holds the last whole epoch
  double best_ema_val_accuracy = 0;  ///< with --ema: the best validation accuracy of the EMA weights
  std::vector<std::string> snapshots;  ///< with --snapshots: the snapshot files written so far
  bool budget_spent = false;  ///< a budget run ended because its budget was spent
  double elapsed_seconds = 0;  ///< wall time of the run since its start, over all resumes
};

/// Runs the training described by `config`, writing the run folder; `log` receives one line per
/// epoch and the warnings. Throws ConfigError/SpecError for bad settings, Error for a
/// non-finite loss (the last good checkpoint stays), IoError when the run folder cannot be
/// written.
///
/// With `resume`, continues the run in config.out from its last.ckpt (weights, batch-norm
/// statistics, optimizer state, step, epoch, the unusable samples found so far, the best
/// accuracy): the run ends with the same weights as an uninterrupted one.
/// When `stop` becomes true (a signal handler sets it) the current epoch is abandoned, the
/// loader joined, and the function returns with interrupted = true.
///
/// With `comm` of several processes (mpirun), the run is data-parallel: every process calls
/// train() with the same config; each loads and computes its share of every batch, and the run
/// ends with the weights, statistics and metrics of the same run in one process (see
/// docs/distributed.md). Only rank 0 logs and writes the run folder. Null: one process.
TrainSummary train(const TrainConfig& config, const std::function<void(const std::string&)>& log,
                   bool resume = false, const std::atomic<bool>* stop = nullptr,
                   const ProgressSink& progress = {}, Communicator* comm = nullptr);

}  // namespace augflow::pipeline
