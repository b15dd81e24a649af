// Hyperparameter search behind `augflow search`: many short training runs (trials) with
// hyperparameters drawn from a search space (model/search_space.hpp), coarse to fine, several
// trials at once, each trial an ordinary run folder of pipeline::train.
//
// Stages. Stage 1 runs `trials` trials of `epochs` epochs over the space as given. Each later
// stage s zooms in around the best trials of stage s-1 (zoom_space: the best 10%, at least 3)
// and has the same budget in epochs: half the trials, twice the epochs (stage s: ceil(trials /
// 2^(s-1)) trials of epochs * 2^(s-1) epochs).
//
// Trials. Trial i of stage s has its own seed, mix64 of (search seed, s, i) (initialisation,
// order, augmentation, dropout masks), and its own parameters (sample_trial with the key
// (search seed, s, i), or the i-th grid point): a trial's result does not depend on which
// other trials run, in which order or how many at once. The train/validation split (with
// val_split) is the same for every trial: it is drawn from the search seed.
//
// How parameters reach a trial's TrainConfig (a parameter used nowhere is a SpecError):
//   lr            the base learning rate
//   reg           λ of the regularizer: the kind of --reg (l2, l1, elastic with its β), l2 when
//                 --reg is none
//   weight_decay  AdamW's decoupled decay;  ema  the EMA decay;  batch  the batch size
//   optimizer, schedule   words, e.g. optimizer=choice(sgd,momentum,adam)
//   any name      replaces the placeholder {name} in the model or augmentation spec, e.g.
//                 --model 'fc{hidden}-relu-drop{dropout}-fc10' (a placeholder without a
//                 parameter is a SpecError too)
//
// Processes. Under mpirun the trials are spread over the processes as they free up (each
// process runs `parallel` at once): see search() with a Communicator.
//
// Parallel trials. `parallel` trials run at once, each on its own thread inside its own
// tbb::task_arena of threads/parallel slots (the model's batch-parallel loops run in the arena
// of the thread that trains), with a loader of threads/parallel threads. Training results do
// not depend on the thread count, so --parallel changes the speed, never a result.
//
// The search folder (everything relative to `out`):
//   results.json   the contract: settings, stages (ranges, best, warnings), every finished
//                  trial sorted by validation accuracy, best (see write_results)
//   results.csv    the same table, one row per trial
//   scatter.png    validation accuracy over each pair of ranged parameters (log axes for log)
//   stageS/trialNNN/  the trial's run folder (config.json, metrics.csv, summary.json,
//                  curves.png, train.log; best.ckpt and last.ckpt only for the `keep` best trials)
// results.json and results.csv are rewritten (atomically: a temporary file, then rename) after
// every trial. Running the same search again with the same folder, or resume = true, skips the
// finished trials and reruns the unfinished ones from scratch; a folder holding a different
// search is a ConfigError.
//
// API: public, part of augflow::pipeline; installed as <augflow/pipeline/search.hpp>.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "augflow/common/communicator.hpp"
#include "augflow/model/search_space.hpp"
#include "augflow/pipeline/trainer.hpp"

namespace augflow::pipeline {

struct SearchConfig {
  /// Everything a trial shares: data, model and augmentation specs (with placeholders),
  /// optimizer, schedule, batch, ... `base.epochs` is stage 1's epochs, `base.seed` the search
  /// seed, `base.threads` the threads of the whole search; `base.out` is unused.
  TrainConfig base;
  std::string space;    ///< the search space text (model/search_space.hpp)
  int trials = 20;      ///< trials of stage 1 (about this many grid points with `grid`)
  int stages = 1;
  bool grid = false;    ///< grid search instead of random search
  int parallel = 1;     ///< trials at once
  int keep = 5;         ///< the best trials whose checkpoints are kept
  std::string out;      ///< the search folder
};

/// One finished trial.
struct TrialResult {
  int stage = 1;                     ///< 1-based
  int index = 0;                     ///< 0-based within its stage
  model::Assignment params;          ///< in the order of the space's parameters
  std::uint64_t seed = 0;
  int epochs = 0;
  std::string run_dir;               ///< relative to the search folder
  bool ok = true;                    ///< false: the run failed (e.g. diverged); `error` says why
  std::string error;
  double val_accuracy = 0;           ///< best validation accuracy over the trial's epochs
  double final_val_accuracy = 0;
  int best_epoch = 0;
  int epochs_run = 0;
  double seconds = 0;                ///< wall time of the trial
  bool checkpoint = false;           ///< its best.ckpt is kept (one of the `keep` best)
};

struct StageResult {
  int stage = 1;
  int epochs = 0;
  int trials = 0;                    ///< planned
  model::SearchSpace space;          ///< the ranges this stage drew from
  int finished = 0;
  double best_val_accuracy = 0;
  std::vector<std::string> warnings; ///< best values on a border of the stage's range
};

struct SearchResult {
  std::vector<StageResult> stages;   ///< the stages started
  std::vector<TrialResult> trials;   ///< finished trials, best first
  bool interrupted = false;          ///< `stop` was raised: resume to finish
  int trials_run = 0;                ///< trials this call trained (not the ones a resume skipped)
  int world_size = 1;                ///< the processes of the job that ran the last call (mpirun -np)
};

/// The epochs and trials of stage `stage` (1-based), as the header comment says.
int stage_epochs(const SearchConfig& config, int stage);
int stage_trials(const SearchConfig& config, int stage);

/// The seed of trial `index` of stage `stage`.
std::uint64_t trial_seed(std::uint64_t search_seed, int stage, int index);

/// The TrainConfig of one trial: `base` with the parameters applied (see the header comment)
/// and the placeholders replaced. Throws SpecError for a placeholder without a parameter, or a
/// parameter used nowhere.
TrainConfig trial_config(const TrainConfig& base, const model::SearchSpace& space, const model::Assignment& params);

/// The lecture's line for a finished trial:
///   "val_acc: 0.412000, lr: 1.405206e-04, reg: 4.793564e-01, (1 / 100)"
/// (log parameters in %e, other numbers as drawn, words as they are).
std::string trial_line(const model::SearchSpace& space, const TrialResult& trial, int done, int total);

/// Runs the search, or resumes it when config.out holds its results.json. `log` receives the
/// stage headers (with the ranges chosen), one trial_line per finished trial, each stage's
/// best and the border warnings; it is called from one thread at a time. When `stop` becomes
/// true, running trials are abandoned (they rerun on resume) and the function returns with
/// interrupted = true. Throws SpecError/ConfigError for bad settings before any training,
/// ConfigError when config.out holds a different search, IoError/DataError when the data or the
/// folder cannot be used (after the running trials end), Error when every trial of a stage
/// failed.
SearchResult search(const SearchConfig& config, const std::function<void(const std::string&)>& log,
                    const std::atomic<bool>* stop = nullptr);
/// The same over the processes of `comm` (mpirun): rank 0 plans the stages, hands out the
/// trials as processes free up (pipeline/trial_dispatch.hpp), logs and writes the search
/// folder; the other processes train the trials they are sent, each in one process, and return
/// an empty result. The processes first check that they run the same search on the same data
/// (ConfigError naming the rank that differs). The lines, results.csv rows (seconds aside),
/// stage bests and warnings are those of a one-process search.
SearchResult search(const SearchConfig& config, const std::function<void(const std::string&)>& log,
                    const std::atomic<bool>* stop, Communicator& comm);

/// Writes config.out/results.json and results.csv (each atomically: a temporary file, fsync,
/// rename) and scatter.png for `result`, whose trials are best first.
void write_results(const SearchConfig& config, const SearchResult& result);

/// The finished trials config.out/results.json holds (none without the file). Throws
/// ConfigError when it holds a different search (settings other than parallel, threads and
/// cache_mb differ), DataError when it does not parse.
std::vector<TrialResult> read_results(const SearchConfig& config);

/// The settings of the search in `dir` (its results.json), with out = dir: what --resume runs.
/// Throws IoError when there is none, DataError/ConfigError when it is malformed.
SearchConfig read_search_config(const std::string& dir);

/// The settings that identify a search (what results.json keeps under "settings"), and back.
nlohmann::json to_json(const SearchConfig& config);
SearchConfig search_config_from_json(const nlohmann::json& settings);

}  // namespace augflow::pipeline
