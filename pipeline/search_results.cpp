// The files of a search folder: results.json, results.csv and scatter.png (see search.hpp).

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/format.hpp"
#include "pipeline/plot.hpp"
#include "pipeline/search.hpp"

namespace augflow::pipeline {
namespace {
namespace fs = std::filesystem;
using model::Distribution;
using model::ParamValue;
using model::SearchSpace;

constexpr int kResultsVersion = 1;
/// Settings that may differ when a search is resumed: they change the speed, not the results.
constexpr std::string_view kRunningSettings[] = {"parallel", "threads", "cache_mb"};

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

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

/// results.json of a search folder, parsed; DataError when it is not JSON.
nlohmann::json load_results(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw IoError(path.string() + ": cannot read");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path.string(), std::string("not valid JSON: ") + e.what());
  }
}

}  // namespace

void write_results(const SearchConfig& config, const SearchResult& result) {
  const SearchSpace space = model::parse_search_space(config.space);
  const fs::path out = config.out;

  nlohmann::json json = {{"version", kResultsVersion}, {"settings", to_json(config)}};
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
  const bool all_stages = !result.stages.empty() && static_cast<int>(result.stages.size()) == config.stages &&
                          result.stages.back().finished == result.stages.back().trials;
  json["complete"] = all_stages && !result.interrupted;
  json["interrupted"] = result.interrupted;
  json["world_size"] = result.world_size;
  write_file_atomically((out / "results.json").string(), json.dump(2) + "\n");

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
  write_file_atomically((out / "results.csv").string(), csv);

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

std::vector<TrialResult> read_results(const SearchConfig& config) {
  const fs::path path = fs::path(config.out) / "results.json";
  std::vector<TrialResult> trials;
  if (!fs::exists(path)) return trials;
  const nlohmann::json saved = load_results(path);
  nlohmann::json mine = to_json(config);
  nlohmann::json theirs = saved.value("settings", nlohmann::json::object());
  for (auto key : kRunningSettings) mine.erase(std::string(key)), theirs.erase(std::string(key));
  std::string differ;
  for (const auto& [key, value] : mine.items())
    if (!theirs.contains(key) || theirs[key] != value) differ += (differ.empty() ? "" : ", ") + key;
  if (!differ.empty())
    throw ConfigError(config.out + " holds a different search (settings that differ: " + differ +
                      "); resume it with augflow search --resume " + config.out + ", or give another --out");
  const SearchSpace space = model::parse_search_space(config.space);
  try {
    for (const auto& t : saved.at("trials")) trials.push_back(trial_from_json(space, t));
  } catch (const nlohmann::json::exception& e) {
    throw DataError(path.string(), std::string("a trial is incomplete or malformed: ") + e.what());
  }
  return trials;
}

SearchConfig read_search_config(const std::string& dir) {
  const fs::path path = fs::path(dir) / "results.json";
  if (!fs::exists(path)) throw IoError(path.string() + ": not found (is " + dir + " the folder of an augflow search?)");
  SearchConfig config = search_config_from_json(load_results(path).value("settings", nlohmann::json::object()));
  config.out = dir;
  return config;
}

}  // namespace augflow::pipeline
