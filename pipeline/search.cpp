#include "pipeline/search.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>
#include <oneapi/tbb/task_arena.h>

#include "augment/spec.hpp"
#include "common/error.hpp"
#include "common/rng.hpp"
#include "common/tsan.hpp"
#include "model/config.hpp"
#include "model/optim.hpp"
#include "model/regularizer.hpp"
#include "pipeline/dataset.hpp"
#include "pipeline/trial_dispatch.hpp"

namespace augflow::pipeline {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using model::Assignment;
using model::Distribution;
using model::ParamValue;
using model::SearchSpace;

/// The training settings a parameter of the space can set (see search.hpp).
constexpr std::string_view kSettings[] = {"lr", "reg", "weight_decay", "ema", "batch", "optimizer", "schedule"};

bool is_setting(std::string_view name) { return std::find(std::begin(kSettings), std::end(kSettings), name) != std::end(kSettings); }

std::string settings_list() {
  std::string text;
  for (auto s : kSettings) text += (text.empty() ? "" : ", ") + std::string(s);
  return text;
}

/// The placeholders {name} of a spec, in order of appearance (a JSON spec's '{"' is none).
std::vector<std::string> placeholders(const std::string& spec) {
  std::vector<std::string> names;
  for (std::size_t open = spec.find('{'); open != std::string::npos; open = spec.find('{', open + 1)) {
    std::size_t end = open + 1;
    while (end < spec.size() && (std::isalnum(static_cast<unsigned char>(spec[end])) || spec[end] == '_')) ++end;
    if (end < spec.size() && spec[end] == '}' && end > open + 1 && std::isalpha(static_cast<unsigned char>(spec[open + 1])))
      names.push_back(spec.substr(open + 1, end - open - 1));
  }
  return names;
}

std::string substitute(std::string spec, const SearchSpace& space, const Assignment& params) {
  for (std::size_t i = 0; i < space.params.size(); ++i) {
    const std::string key = "{" + space.params[i].name + "}";
    for (std::size_t at = spec.find(key); at != std::string::npos; at = spec.find(key, at + params[i].text.size()))
      spec.replace(at, key.size(), params[i].text);
  }
  return spec;
}

std::string names_of(const SearchSpace& space) {
  std::string text;
  for (const auto& p : space.params) text += (text.empty() ? "" : ", ") + p.name;
  return text;
}

/// "lr=0.0001405 reg=0.4794 hidden=100" for messages (four significant digits; results.json and
/// the trial's config.json hold the exact values).
std::string describe(const SearchSpace& space, const Assignment& params) {
  std::string text;
  for (std::size_t i = 0; i < space.params.size(); ++i) {
    char number[32];
    std::snprintf(number, sizeof number, "%.4g", params[i].number);
    text += (i ? " " : "") + space.params[i].name + "=" + (params[i].numeric() ? number : params[i].text);
  }
  return text;
}

std::string run_dir_of(int stage, int index) {
  char name[64];
  std::snprintf(name, sizeof name, "stage%d/trial%03d", stage, index);
  return name;
}

/// The first sentence of an error message, for the one-line trial report.
std::string first_sentence(const std::string& message) {
  std::size_t end = std::min(message.find(". "), message.find('\n'));
  return end == std::string::npos ? message : message.substr(0, end);
}

/// Best first: successful trials by validation accuracy, then by (stage, index), so the order
/// does not depend on when trials finished.
bool better(const TrialResult& a, const TrialResult& b) {
  if (a.ok != b.ok) return a.ok;
  if (a.val_accuracy != b.val_accuracy) return a.val_accuracy > b.val_accuracy;
  if (a.stage != b.stage) return a.stage < b.stage;
  return a.index < b.index;
}

/// Checks, before anything trains, every setting the trials of a stage will use: a bad spec
/// or value fails the search at once (exit status 2), not trial after trial.
void check_trials(const TrainConfig& base, const SearchSpace& space, int stage,
                  const std::vector<std::pair<int, const Assignment*>>& trials) {
  for (const auto& [index, params] : trials) {
    const std::string which = "stage " + std::to_string(stage) + ", trial " + std::to_string(index) + " (" +
                              describe(space, *params) + "): ";
    const TrainConfig c = trial_config(base, space, *params);
    try {
      model::parse_model_spec(c.model, 10);  // syntax only: the class count is known at training
      if (!c.aug.empty()) augment::parse_pipeline_any(c.aug);
      model::parse_schedule(c.schedule);
      model::parse_regularizer(c.regularizer);
      model::make_optimizer(c.optimizer, model::OptimizerOptions{});
      if (!(c.lr > 0) || !std::isfinite(c.lr)) throw ConfigError("the learning rate must be a positive number");
      if (c.batch < 1) throw ConfigError("the batch size must be at least 1");
      if (!(c.ema >= 0 && c.ema < 1)) throw ConfigError("ema must be in [0, 1)");
    } catch (const SpecError& e) {
      throw SpecError(which + e.what(), e.token(), e.position());
    } catch (const ConfigError& e) {
      throw ConfigError(which + e.what());
    }
  }
}

/// Runs one trial in its own task_arena; nothing when `stop` interrupted it (it reruns on
/// resume). IoError and DataError (the data or the folder) end the search; any other Error
/// (divergence, a shape that does not fit) is the trial's result.
std::optional<TrialResult> run_trial(const SearchConfig& config, const SearchSpace& space, int stage, int index,
                                     const Assignment& params, int threads, const std::atomic<bool>* stop) {
  TrialResult r;
  r.stage = stage;
  r.index = index;
  r.params = params;
  r.seed = trial_seed(config.base.seed, stage, index);
  r.epochs = stage_epochs(config, stage);
  r.run_dir = run_dir_of(stage, index);
  TrainConfig c = trial_config(config.base, space, params);
  c.epochs = r.epochs;
  c.seed = r.seed;
  c.split_seed = config.base.seed;
  c.threads = threads;
  // A trial with one core: its loading runs on its training thread, which only takes turns
  // with a loader thread anyway (one core per trial when --parallel equals --threads).
  c.inline_loading = threads == 1;
  c.out = (fs::path(config.out) / r.run_dir).string();
  fs::remove_all(c.out);  // what an interrupted attempt left
  fs::create_directories(c.out);
  std::ofstream log_file(fs::path(c.out) / "train.log");
  std::mutex log_mutex;  // the loader reports bad files from its threads
  auto log = [&](const std::string& line) {
    std::lock_guard lock(log_mutex);
    log_file << line << std::endl;
  };
  log("trial " + std::to_string(index) + " of stage " + std::to_string(stage) + ": " + describe(space, params) +
      ", seed " + std::to_string(r.seed));
  const auto start = Clock::now();
  tbb::task_arena arena(threads);
  TrainSummary summary;
  try {
    execute_in_arena(arena, [&] { summary = train(c, log, false, stop); });
  } catch (const IoError&) {
    throw;
  } catch (const DataError&) {
    throw;
  } catch (const Error& e) {
    log(std::string("error: ") + e.what());
    r.ok = false;
    r.error = e.what();
  }
  if (summary.interrupted) return std::nullopt;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.val_accuracy = summary.best_val_accuracy;
  r.final_val_accuracy = summary.final_val_accuracy;
  r.best_epoch = summary.best_epoch;
  r.epochs_run = summary.epochs_run;
  r.checkpoint = fs::exists(fs::path(c.out) / "best.ckpt");
  return r;
}

std::string plural(int n, const char* word) { return std::to_string(n) + " " + word + (n == 1 ? "" : "s"); }

/// Keeps the checkpoints of the `keep` best successful trials (`trials` best first) and
/// deletes the others': disk use stays bounded, metrics stay.
void prune_checkpoints(const SearchConfig& config, std::vector<TrialResult>& trials) {
  std::size_t rank = 0;
  for (auto& t : trials) {
    const bool keep = t.ok && rank++ < static_cast<std::size_t>(config.keep);
    if (keep || !t.checkpoint) continue;
    std::error_code ignored;
    for (const char* file : {"best.ckpt", "last.ckpt", "ema.ckpt"}) fs::remove(fs::path(config.out) / t.run_dir / file, ignored);
    t.checkpoint = false;
  }
}

/// The trials of a stage: grid points, or one random draw per trial index.
std::vector<Assignment> plan_stage(const SearchConfig& config, const SearchSpace& space, int stage) {
  if (config.grid) return model::grid_trials(space, stage_trials(config, stage));
  std::vector<Assignment> trials;
  for (int i = 0; i < stage_trials(config, stage); ++i)
    trials.push_back(model::sample_trial(
        space, {config.base.seed, static_cast<std::uint64_t>(stage), static_cast<std::uint64_t>(i)}));
  return trials;
}

/// Trains the `pending` trials of stage `current.stage`: `dispatcher` hands them out to this
/// process's threads and the job's other processes as they free up. Every finished trial is
/// added to `result` (sorted, checkpoints pruned) and written out at once; its line is logged
/// in trial order (a line waits for the trials before it), so the log is the same whatever the
/// number of processes and threads and whatever order the trials finish in.
void run_stage(const SearchConfig& config, const SearchSpace& space,
               const std::vector<std::pair<int, const Assignment*>>& pending, StageResult& current,
               SearchResult& result, const std::function<void(const std::string&)>& log,
               TrialDispatcher& dispatcher) {
  std::vector<TrialTask> tasks;
  for (const auto& [index, params] : pending) tasks.push_back({current.stage, index, *params});
  const int finished_before = current.finished;
  std::vector<std::optional<TrialResult>> lines(tasks.size());
  std::size_t logged = 0;
  auto log_ready_lines = [&] {
    for (; logged < lines.size() && lines[logged]; ++logged)
      log(trial_line(space, *lines[logged], finished_before + static_cast<int>(logged) + 1, current.trials));
  };
  dispatcher.run(tasks, [&](std::size_t k, TrialResult&& trial) {
    ++current.finished;
    ++result.trials_run;
    lines[k] = trial;
    result.trials.push_back(std::move(trial));
    std::stable_sort(result.trials.begin(), result.trials.end(), better);
    prune_checkpoints(config, result.trials);
    write_results(config, result);
    log_ready_lines();
  });
  // Interrupted: the trials that finished after a missing one are saved; their lines follow.
  for (std::size_t k = logged; k < lines.size(); ++k)
    if (lines[k]) log(trial_line(space, *lines[k], finished_before + static_cast<int>(k) + 1, current.trials));
}

}  // namespace

int stage_epochs(const SearchConfig& config, int stage) { return config.base.epochs << (stage - 1); }

int stage_trials(const SearchConfig& config, int stage) {
  const int divisor = 1 << (stage - 1);
  return std::max(1, (config.trials + divisor - 1) / divisor);
}

std::uint64_t trial_seed(std::uint64_t search_seed, int stage, int index) {
  return Rng({search_seed, static_cast<std::uint64_t>(stage), static_cast<std::uint64_t>(index)}).next_u64();
}

TrainConfig trial_config(const TrainConfig& base, const SearchSpace& space, const Assignment& params) {
  const auto model_names = placeholders(base.model);
  const auto aug_names = placeholders(base.aug);
  for (const auto& [option, names] : {std::pair{"--model", &model_names}, std::pair{"--aug", &aug_names}})
    for (const auto& name : *names)
      if (!space.find(name))
        throw SpecError(std::string(option) + " has the placeholder {" + name + "}, but --space has no parameter '" +
                            name + "' (its parameters: " + names_of(space) + ")",
                        "{" + name + "}");
  TrainConfig c = base;
  for (std::size_t i = 0; i < space.params.size(); ++i) {
    const std::string& name = space.params[i].name;
    const ParamValue& v = params.at(i);
    const bool placeholder = std::count(model_names.begin(), model_names.end(), name) ||
                             std::count(aug_names.begin(), aug_names.end(), name);
    if (!is_setting(name)) {
      if (!placeholder)
        throw SpecError("search space: the parameter '" + name + "' is used nowhere: it is not a training setting (" +
                            settings_list() + ") and neither --model nor --aug has the placeholder {" + name + "}",
                        name);
      continue;
    }
    if (name == "optimizer" || name == "schedule") {
      (name == "optimizer" ? c.optimizer : c.schedule) = v.text;
      continue;
    }
    if (!v.numeric())
      throw SpecError("search space: " + name + " takes numbers, not '" + v.text + "'", v.text);
    if (name == "lr") {
      c.lr = v.number;
    } else if (name == "reg") {
      // The kind (and elastic net's beta) of --reg, with this strength; L2 when --reg is none.
      model::Regularizer reg = model::parse_regularizer(base.regularizer);
      if (reg.kind == model::RegularizerKind::none) reg.kind = model::RegularizerKind::l2;
      reg.lambda = v.number;
      c.regularizer = model::print_regularizer(reg);
    } else if (name == "weight_decay") {
      c.weight_decay = v.number;
    } else if (name == "ema") {
      c.ema = v.number;
    } else if (name == "batch") {
      if (v.number != std::floor(v.number) || v.number < 1)
        throw SpecError("search space: batch takes whole numbers >= 1, not " + v.text + " (use int(LO,HI) or choice)",
                        v.text);
      c.batch = static_cast<int>(v.number);
    }
  }
  c.model = substitute(base.model, space, params);
  c.aug = substitute(base.aug, space, params);
  return c;
}

std::string trial_line(const SearchSpace& space, const TrialResult& t, int done, int total) {
  char text[64];
  std::string line = "val_acc: ";
  if (t.ok) {
    std::snprintf(text, sizeof text, "%f", t.val_accuracy);
    line += text;
  } else {
    line += "failed";
  }
  for (std::size_t i = 0; i < space.params.size(); ++i) {
    const auto& p = space.params[i];
    const auto& v = t.params[i];
    if (p.kind == Distribution::log_uniform)
      std::snprintf(text, sizeof text, "%e", v.number);
    else if (p.kind == Distribution::uniform)
      std::snprintf(text, sizeof text, "%f", v.number);
    else
      std::snprintf(text, sizeof text, "%s", v.text.c_str());
    line += ", " + p.name + ": " + text;
  }
  line += ", (" + std::to_string(done) + " / " + std::to_string(total) + ")";
  if (!t.ok) line += ": " + first_sentence(t.error);
  return line;
}

nlohmann::json to_json(const SearchConfig& config) {
  nlohmann::json json = to_json(config.base);
  json.erase("out");
  json["space"] = model::print_search_space(model::parse_search_space(config.space));
  json["trials"] = config.trials;
  json["stages"] = config.stages;
  json["grid"] = config.grid;
  json["parallel"] = config.parallel;
  json["keep"] = config.keep;
  return json;
}

SearchConfig search_config_from_json(const nlohmann::json& settings) {
  SearchConfig config;
  try {
    nlohmann::json base = settings;
    base["out"] = "";
    config.base = train_config_from_json(base);
    config.space = settings.at("space");
    config.trials = settings.at("trials");
    config.stages = settings.at("stages");
    config.grid = settings.at("grid");
    config.parallel = settings.at("parallel");
    config.keep = settings.at("keep");
  } catch (const nlohmann::json::exception& e) {
    throw ConfigError(std::string("the settings in results.json are incomplete or malformed: ") + e.what());
  }
  return config;
}


SearchResult search(const SearchConfig& config, const std::function<void(const std::string&)>& log,
                    const std::atomic<bool>* stop) {
  return search(config, log, stop, *make_local_communicator());
}

SearchResult search(const SearchConfig& requested, const std::function<void(const std::string&)>& log,
                    const std::atomic<bool>* stop, Communicator& comm) {
  SearchConfig config = requested;
  if (config.out.empty()) throw ConfigError("--out DIR is required");
  if (config.base.train.empty()) throw ConfigError("--train SRC is required");
  if (config.trials < 1) throw ConfigError("--trials must be at least 1, got " + std::to_string(config.trials));
  if (config.stages < 1 || config.stages > 8)
    throw ConfigError("--stages must be from 1 to 8, got " + std::to_string(config.stages));
  if (config.base.epochs < 1) throw ConfigError("--epochs must be at least 1, got " + std::to_string(config.base.epochs));
  if (config.parallel < 1) throw ConfigError("--parallel must be at least 1, got " + std::to_string(config.parallel));
  if (config.keep < 0) throw ConfigError("--keep must be 0 or more, got " + std::to_string(config.keep));
  if (config.base.threads < 1) throw ConfigError("--threads must be at least 1");
  const SearchSpace space = model::parse_search_space(config.space);
  // A parameter used nowhere or a placeholder without a parameter is an error before anything runs.
  trial_config(config.base, space, plan_stage(config, space, 1).front());

  // Resume: the finished trials of the same search are kept; a different search is an error.
  SearchResult result;
  result.world_size = comm.size();
  result.trials = read_results(config);
  if (!result.trials.empty())
    log("resuming " + config.out + ": " + plural(static_cast<int>(result.trials.size()), "trial") + " finished before");
  // Every trial opens the data again. In-memory data sets (IDX) opened here stay alive for the
  // whole search, so the trials share their pixels (open_idx) instead of reading them each time;
  // a source that cannot be opened fails the search here, before any trial.
  std::vector<Dataset> shared_data, listed;
  for (const auto& source : {config.base.train, config.base.val}) {
    if (source.empty()) continue;
    Dataset data = open_dataset(source);
    (data.in_memory() ? shared_data : listed).push_back(std::move(data));
  }
  // Image folders: one decoded-image cache for the trials of this process, so that each file is
  // decoded once for the whole search (while the --cache budget lasts) rather than once per trial
  // and epoch.
  if (config.base.cache_mb > 0 && !listed.empty())
    config.base.shared_cache = std::make_shared<ImageCache>(config.base.cache_mb << 20);
  // Several processes (mpirun): the same search on the same data with the same program, or an
  // error naming the rank that differs, before any trial. How fast each process is (threads,
  // parallel, cache) may differ: results do not depend on it.
  if (comm.size() > 1) {
    nlohmann::json settings = to_json(config);
    for (const char* speed : {"threads", "parallel", "cache_mb"}) settings.erase(speed);
    settings["out"] = config.out;
    for (const auto& d : shared_data) listed.push_back(d);
    check_agreement(comm, {{"version", "augflow " AUGFLOW_VERSION_STRING},
                           {"settings", settings.dump()},
                           {"data", listing_digest(listed)}});
  }
  listed.clear();
  const int trial_threads = std::max(1, config.base.threads / config.parallel);
  TrialDispatcher dispatcher(
      comm, config.parallel,
      [&](const TrialTask& task) {
        return run_trial(config, space, task.stage, task.index, task.params, trial_threads, stop);
      },
      stop);
  if (!comm.root()) {
    // Rank 0 plans the stages, logs and writes results.json; this process trains what it is sent.
    result.interrupted = !dispatcher.serve();
    return result;
  }
  fs::create_directories(config.out);
  if (config.parallel > config.base.threads)
    log("warning: --parallel " + std::to_string(config.parallel) + " is more than --threads " +
        std::to_string(config.base.threads) + ": the trials share the cores");

  SearchSpace stage_space = space;
  for (int stage = 1; stage <= config.stages; ++stage) {
    std::string header = "stage " + std::to_string(stage) + "/" + std::to_string(config.stages) + ": ";
    if (stage > 1) {
      // Coarse to fine: the ranges shrink around the best trials of the previous stage.
      std::vector<Assignment> best;
      for (const auto& t : result.trials)
        if (t.stage == stage - 1 && t.ok) best.push_back(t.params);  // already best first
      best.resize(model::zoom_top_count(best.size()));
      stage_space = model::zoom_space(stage_space, best);
      header += "zoomed in around the best " + std::to_string(best.size()) + " of stage " + std::to_string(stage - 1) + "; ";
    }
    const std::vector<Assignment> planned = plan_stage(config, stage_space, stage);
    StageResult& current = result.stages.emplace_back();
    current.stage = stage;
    current.epochs = stage_epochs(config, stage);
    current.trials = static_cast<int>(planned.size());
    current.space = stage_space;
    std::set<int> done;
    for (const auto& t : result.trials)
      if (t.stage == stage) done.insert(t.index);
    current.finished = static_cast<int>(done.size());
    std::vector<std::pair<int, const Assignment*>> pending;
    for (int i = 0; i < current.trials; ++i)
      if (!done.count(i)) pending.push_back({i, &planned[i]});
    std::string ranges;
    for (const auto& p : stage_space.params) ranges += " " + model::describe_param_range(p);
    log(header + plural(current.trials, "trial") + " of " + plural(current.epochs, "epoch") +
        (config.grid ? " (grid)" : "") + " over" + ranges +
        (done.empty() ? "" : "; " + std::to_string(done.size()) + " finished before"));
    check_trials(config.base, space, stage, pending);

    run_stage(config, space, pending, current, result, log, dispatcher);
    if (current.finished < current.trials) {
      result.interrupted = true;
      write_results(config, result);
      dispatcher.finish();
      return result;
    }
    const auto best = std::find_if(result.trials.begin(), result.trials.end(),
                                   [&](const TrialResult& t) { return t.stage == stage && t.ok; });
    if (best == result.trials.end()) {
      const auto first = std::find_if(result.trials.begin(), result.trials.end(),
                                      [&](const TrialResult& t) { return t.stage == stage; });
      throw Error("every trial of stage " + std::to_string(stage) + " failed; the first error: " + first->error +
                  " (details in " + (fs::path(config.out) / first->run_dir / "train.log").string() + ")");
    }
    current.best_val_accuracy = best->val_accuracy;
    current.warnings = model::border_warnings(stage_space, best->params);
    char line[96];
    std::snprintf(line, sizeof line, "stage %d: best val_acc %.6f (trial %d: ", stage, best->val_accuracy, best->index);
    log(line + describe(space, best->params) + ")");
    for (const auto& w : current.warnings) log("warning: stage " + std::to_string(stage) + ": " + w);
  }
  if (const auto& cache = config.base.shared_cache) {
    char line[160];
    std::snprintf(line, sizeof line,
                  "decoded-image cache: %zu images decoded, %zu reads served from memory (%.1f of %zu MB held)",
                  cache->misses(), cache->hits(), cache->bytes() / 1048576.0, cache->budget() >> 20);
    log(line);
  }
  write_results(config, result);
  dispatcher.finish();
  return result;
}

}  // namespace augflow::pipeline
