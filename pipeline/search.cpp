#include "pipeline/search.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>
#include <oneapi/tbb/task_arena.h>

#include "augment/spec.hpp"
#include "common/error.hpp"
#include "common/format.hpp"
#include "common/rng.hpp"
#include "model/config.hpp"
#include "model/optim.hpp"
#include "model/regularizer.hpp"
#include "pipeline/dataset.hpp"
#include "pipeline/plot.hpp"

namespace augflow::pipeline {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using model::Assignment;
using model::Distribution;
using model::ParamValue;
using model::SearchSpace;

constexpr int kResultsVersion = 1;
/// The training settings a parameter of the space can set (see search.hpp).
constexpr std::string_view kSettings[] = {"lr", "reg", "weight_decay", "ema", "batch", "optimizer", "schedule"};
/// Settings that may differ when a search is resumed: they change the speed, not the results.
constexpr std::string_view kRunningSettings[] = {"parallel", "threads", "cache_mb"};

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

/// Writes `text` to `path` so that a reader (or a crash) sees the old or the new file, never a
/// part: a temporary file next to it, fsync, rename.
void write_atomically(const fs::path& path, const std::string& text) {
  const fs::path temp = path.parent_path() / ("." + path.filename().string() + ".tmp");
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw IoError(temp.string() + ": cannot write");
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) {
      ::close(fd);
      throw IoError(temp.string() + ": cannot write (disk full?)");
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  if (::close(fd) != 0 || !synced) throw IoError(temp.string() + ": cannot write (disk full?)");
  std::error_code error;
  fs::rename(temp, path, error);
  if (error) throw IoError(path.string() + ": cannot replace: " + error.message());
}

nlohmann::json trial_to_json(const SearchSpace& space, const TrialResult& t) {
  nlohmann::json params = nlohmann::json::object();
  for (std::size_t i = 0; i < space.params.size(); ++i)
    params[space.params[i].name] = model::param_value_to_json(t.params[i]);
  nlohmann::json json = {{"stage", t.stage},
                         {"trial", t.index},
                         {"status", t.ok ? "ok" : "failed"},
                         {"val_accuracy", t.val_accuracy},
                         {"final_val_accuracy", t.final_val_accuracy},
                         {"best_epoch", t.best_epoch},
                         {"epochs", t.epochs},
                         {"epochs_run", t.epochs_run},
                         {"params", std::move(params)},
                         {"seed", t.seed},
                         {"seconds", t.seconds},
                         {"run_dir", t.run_dir},
                         {"checkpoint", t.checkpoint ? nlohmann::json(t.run_dir + "/best.ckpt") : nlohmann::json()}};
  if (!t.ok) json["error"] = t.error;
  return json;
}

TrialResult trial_from_json(const SearchSpace& space, const nlohmann::json& j) {
  TrialResult t;
  t.stage = j.at("stage");
  t.index = j.at("trial");
  t.ok = j.at("status") == "ok";
  t.error = j.value("error", "");
  t.val_accuracy = j.at("val_accuracy");
  t.final_val_accuracy = j.at("final_val_accuracy");
  t.best_epoch = j.at("best_epoch");
  t.epochs = j.at("epochs");
  t.epochs_run = j.at("epochs_run");
  t.seed = j.at("seed");
  t.seconds = j.at("seconds");
  t.run_dir = j.at("run_dir");
  t.checkpoint = !j.at("checkpoint").is_null();
  for (const auto& p : space.params) {
    const auto& v = j.at("params").at(p.name);
    t.params.push_back(v.is_number() ? ParamValue{v.get<double>(), format_number(v.get<double>())}
                                     : ParamValue{std::nan(""), v.get<std::string>()});
  }
  return t;
}

/// Best first: successful trials by validation accuracy, then by (stage, index), so the order
/// does not depend on when trials finished.
bool better(const TrialResult& a, const TrialResult& b) {
  if (a.ok != b.ok) return a.ok;
  if (a.val_accuracy != b.val_accuracy) return a.val_accuracy > b.val_accuracy;
  if (a.stage != b.stage) return a.stage < b.stage;
  return a.index < b.index;
}

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

/// The folder's state: everything results.json and results.csv hold.
struct Book {
  const SearchConfig* config = nullptr;
  SearchSpace space;             ///< stage 1's space (names and order of the parameters)
  fs::path out;
  SearchResult result;

  void sort() { std::stable_sort(result.trials.begin(), result.trials.end(), better); }

  /// Keeps the checkpoints of the `keep` best successful trials, deletes the others'.
  void prune() {
    std::size_t rank = 0;
    for (auto& t : result.trials) {
      const bool keep = t.ok && rank++ < static_cast<std::size_t>(config->keep);
      if (keep || !t.checkpoint) continue;
      std::error_code ignored;
      for (const char* file : {"best.ckpt", "last.ckpt", "ema.ckpt"}) fs::remove(out / t.run_dir / file, ignored);
      t.checkpoint = false;
    }
  }

  void write() const {
    nlohmann::json json = {{"version", kResultsVersion}, {"settings", to_json(*config)}};
    json["stages"] = nlohmann::json::array();
    for (const auto& s : result.stages)
      json["stages"].push_back({{"stage", s.stage},
                                {"epochs", s.epochs},
                                {"trials", s.trials},
                                {"finished", s.finished},
                                {"space", model::print_search_space(s.space)},
                                {"ranges", model::search_space_to_json(s.space)},
                                {"best_val_accuracy", s.best_val_accuracy},
                                {"warnings", s.warnings}});
    json["trials"] = nlohmann::json::array();
    for (const auto& t : result.trials) json["trials"].push_back(trial_to_json(space, t));
    json["best"] = !result.trials.empty() && result.trials.front().ok ? json["trials"][0] : nlohmann::json();
    const bool all_stages = static_cast<int>(result.stages.size()) == config->stages &&
                            result.stages.back().finished == result.stages.back().trials;
    json["complete"] = all_stages && !result.interrupted;
    json["interrupted"] = result.interrupted;
    write_atomically(out / "results.json", json.dump(2) + "\n");

    std::string csv = "rank,stage,trial,status,val_accuracy,final_val_accuracy,best_epoch,epochs,seed";
    for (const auto& p : space.params) csv += "," + p.name;
    csv += ",seconds,run_dir,checkpoint\n";
    int rank = 0;
    for (const auto& t : result.trials) {
      char numbers[160];
      std::snprintf(numbers, sizeof numbers, "%d,%d,%d,%s,%.6f,%.6f,%d,%d,%llu", ++rank, t.stage, t.index,
                    t.ok ? "ok" : "failed", t.val_accuracy, t.final_val_accuracy, t.best_epoch, t.epochs,
                    static_cast<unsigned long long>(t.seed));
      csv += numbers;
      for (const auto& v : t.params) csv += "," + csv_field(v.text);
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, ",%.1f,", t.seconds);
      csv += seconds + csv_field(t.run_dir) + "," + (t.checkpoint ? csv_field(t.run_dir + "/best.ckpt") : "") + "\n";
    }
    write_atomically(out / "results.csv", csv);

    std::vector<ScatterAxis> axes;
    std::vector<std::size_t> columns;
    for (std::size_t i = 0; i < space.params.size(); ++i) {
      const auto& p = space.params[i];
      if (!p.ranged() || !(p.hi > p.lo)) continue;
      axes.push_back({p.name, p.lo, p.hi, p.kind == Distribution::log_uniform});
      columns.push_back(i);
    }
    std::vector<ScatterPoint> points;
    for (const auto& t : result.trials) {
      ScatterPoint point;
      for (std::size_t c : columns) point.values.push_back(t.params[c].number);
      point.accuracy = t.ok ? t.val_accuracy : std::nan("");
      point.stage = t.stage;
      point.best = &t == &result.trials.front() && t.ok;
      points.push_back(std::move(point));
    }
    write_scatter((out / "scatter.png").string(), axes, points);
  }
};

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
    arena.execute([&] { summary = train(c, log, false, stop); });
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
  if (config.out.empty()) throw ConfigError("--out DIR is required");
  if (config.base.train.empty()) throw ConfigError("--train SRC is required");
  if (config.trials < 1) throw ConfigError("--trials must be at least 1, got " + std::to_string(config.trials));
  if (config.stages < 1 || config.stages > 8)
    throw ConfigError("--stages must be from 1 to 8, got " + std::to_string(config.stages));
  if (config.base.epochs < 1) throw ConfigError("--epochs must be at least 1, got " + std::to_string(config.base.epochs));
  if (config.parallel < 1) throw ConfigError("--parallel must be at least 1, got " + std::to_string(config.parallel));
  if (config.keep < 0) throw ConfigError("--keep must be 0 or more, got " + std::to_string(config.keep));
  if (config.base.threads < 1) throw ConfigError("--threads must be at least 1");

  Book book;
  book.config = &config;
  book.space = model::parse_search_space(config.space);
  book.out = config.out;
  const SearchSpace& space = book.space;
  // A parameter used nowhere or a placeholder without a parameter is an error before anything runs.
  trial_config(config.base, space, config.grid ? model::grid_trials(space, 1).front() : model::sample_trial(space, {}));

  // Resume: the finished trials of the same search are kept; a different search is an error.
  const fs::path results_path = book.out / "results.json";
  if (fs::exists(results_path)) {
    std::ifstream in(results_path);
    nlohmann::json saved;
    try {
      saved = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw DataError(results_path.string(), std::string("not valid JSON: ") + e.what());
    }
    nlohmann::json mine = to_json(config);
    nlohmann::json theirs = saved.value("settings", nlohmann::json::object());
    std::string differ;
    for (auto key : kRunningSettings) mine.erase(std::string(key)), theirs.erase(std::string(key));
    for (const auto& [key, value] : mine.items())
      if (!theirs.contains(key) || theirs[key] != value) differ += (differ.empty() ? "" : ", ") + key;
    if (!differ.empty())
      throw ConfigError(book.out.string() + " holds a different search (settings that differ: " + differ +
                        "); resume it with augflow search --resume " + book.out.string() +
                        ", or give another --out");
    try {
      for (const auto& t : saved.at("trials")) book.result.trials.push_back(trial_from_json(space, t));
    } catch (const nlohmann::json::exception& e) {
      throw DataError(results_path.string(), std::string("a trial is incomplete or malformed: ") + e.what());
    }
    if (!book.result.trials.empty())
      log("resuming " + book.out.string() + ": " + plural(static_cast<int>(book.result.trials.size()), "trial") +
          " finished before");
  }
  fs::create_directories(book.out);
  // Every trial opens the data again. In-memory data sets (IDX) opened here stay alive for the
  // whole search, so the trials share their pixels (open_idx) instead of reading them each time;
  // a source that cannot be opened fails the search here, before any trial.
  std::vector<Dataset> shared_data;
  for (const auto& source : {config.base.train, config.base.val}) {
    if (source.empty()) continue;
    Dataset data = open_dataset(source);
    if (data.in_memory()) shared_data.push_back(std::move(data));
  }

  const int parallel = config.parallel;
  const int threads = std::max(1, config.base.threads / parallel);
  if (parallel > config.base.threads)
    log("warning: --parallel " + std::to_string(parallel) + " is more than --threads " +
        std::to_string(config.base.threads) + ": the trials share the cores");

  SearchSpace stage_space = space;
  for (int stage = 1; stage <= config.stages; ++stage) {
    const int epochs = stage_epochs(config, stage);
    std::string header = "stage " + std::to_string(stage) + "/" + std::to_string(config.stages) + ": ";
    if (stage > 1) {
      // Coarse to fine: the ranges shrink around the best trials of the previous stage.
      std::vector<const TrialResult*> previous;
      for (const auto& t : book.result.trials)
        if (t.stage == stage - 1 && t.ok) previous.push_back(&t);  // already best first
      const std::size_t top = model::zoom_top_count(previous.size());
      std::vector<Assignment> best;
      for (std::size_t i = 0; i < top; ++i) best.push_back(previous[i]->params);
      stage_space = model::zoom_space(stage_space, best);
      header += "zoomed in around the best " + std::to_string(top) + " of stage " + std::to_string(stage - 1) + "; ";
    }
    const std::vector<Assignment> planned = [&] {
      if (config.grid) return model::grid_trials(stage_space, stage_trials(config, stage));
      std::vector<Assignment> trials;
      for (int i = 0; i < stage_trials(config, stage); ++i)
        trials.push_back(model::sample_trial(
            stage_space, {config.base.seed, static_cast<std::uint64_t>(stage), static_cast<std::uint64_t>(i)}));
      return trials;
    }();
    StageResult st;
    st.stage = stage;
    st.epochs = epochs;
    st.trials = static_cast<int>(planned.size());
    st.space = stage_space;
    std::set<int> done;
    for (const auto& t : book.result.trials)
      if (t.stage == stage) done.insert(t.index);
    st.finished = static_cast<int>(done.size());
    std::vector<std::pair<int, const Assignment*>> pending;
    for (int i = 0; i < st.trials; ++i)
      if (!done.count(i)) pending.push_back({i, &planned[i]});
    std::string ranges;
    for (const auto& p : stage_space.params) ranges += " " + model::describe_param_range(p);
    log(header + plural(st.trials, "trial") + " of " + plural(epochs, "epoch") + (config.grid ? " (grid)" : "") +
        " over" + ranges + (done.empty() ? "" : "; " + std::to_string(done.size()) + " finished before"));
    check_trials(config.base, space, stage, pending);
    book.result.stages.push_back(st);
    StageResult& current = book.result.stages.back();

    // The trials: `parallel` workers take the next pending trial until none is left.
    std::mutex mutex;
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    std::exception_ptr error;
    auto worker = [&] {
      for (;;) {
        if (failed.load() || (stop && stop->load())) return;
        const std::size_t k = next.fetch_add(1);
        if (k >= pending.size()) return;
        try {
          auto trial = run_trial(config, space, stage, pending[k].first, *pending[k].second, threads, stop);
          if (!trial) return;  // interrupted
          std::lock_guard lock(mutex);
          ++current.finished;
          ++book.result.trials_run;
          log(trial_line(space, *trial, current.finished, current.trials));
          book.result.trials.push_back(std::move(*trial));
          book.sort();
          book.prune();
          book.write();
        } catch (...) {
          std::lock_guard lock(mutex);
          if (!error) error = std::current_exception();
          failed.store(true);
          return;
        }
      }
    };
    std::vector<std::thread> workers;
    for (int w = 0; w < std::min<int>(parallel, static_cast<int>(pending.size())); ++w) workers.emplace_back(worker);
    for (auto& w : workers) w.join();
    if (error) std::rethrow_exception(error);
    if (current.finished < current.trials) {
      book.result.interrupted = true;
      book.write();
      return book.result;
    }

    const TrialResult* best = nullptr;
    for (const auto& t : book.result.trials)
      if (t.stage == stage && t.ok) {
        best = &t;
        break;
      }
    if (!best) {
      const auto it = std::find_if(book.result.trials.begin(), book.result.trials.end(),
                                   [&](const TrialResult& t) { return t.stage == stage; });
      throw Error("every trial of stage " + std::to_string(stage) + " failed; the first error: " + it->error +
                  " (details in " + (book.out / it->run_dir / "train.log").string() + ")");
    }
    current.best_val_accuracy = best->val_accuracy;
    current.warnings = model::border_warnings(stage_space, best->params);
    char best_line[96];
    std::snprintf(best_line, sizeof best_line, "stage %d: best val_acc %.6f (trial %d: ", stage, best->val_accuracy,
                  best->index);
    log(best_line + describe(space, best->params) + ")");
    for (const auto& w : current.warnings) log("warning: stage " + std::to_string(stage) + ": " + w);
  }
  book.write();
  return book.result;
}

}  // namespace augflow::pipeline
