// augflow eval: test-time evaluation of a checkpoint or an ensemble, with multi-crop views.
#include <algorithm>
#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "apps/commands.hpp"
#include "common/error.hpp"
#include "pipeline/evaluator.hpp"

namespace augflow::apps {
namespace {

struct EvalCommand {
  pipeline::EvalConfig config;
  std::string scales;
  bool compare = false;
  std::string json;
};

nlohmann::json metrics_json(const pipeline::EvalMetrics& m) {
  return {{"top1", m.top1}, {"top5", m.top5}, {"nll", m.nll}};
}

/// One row of the report per view mode: the ensemble, then each member.
nlohmann::json result_json(const pipeline::EvalResult& r) {
  nlohmann::json members = nlohmann::json::array();
  for (const auto& m : r.members) {
    auto entry = metrics_json(m.metrics);
    entry["path"] = m.path;
    entry["views"] = m.views;
    members.push_back(entry);
  }
  auto j = metrics_json(r.metrics);
  j["views"] = r.views;
  j["views_per_image"] = r.views_per_image;
  j["images_per_second"] = r.images_per_second;
  j["members"] = members;
  return j;
}

void print_result(const pipeline::EvalResult& r) {
  std::printf("views: %s (%d per image)\n", r.views.c_str(), r.views_per_image);
  std::printf("images %zu, skipped %zu, %.1f images/s\n", r.images, r.skipped_files, r.images_per_second);
  const char* what = r.members.size() > 1 ? "ensemble" : "model";
  std::printf("%-9s top1 %.4f  top5 %.4f  nll %.4f\n", what, r.metrics.top1, r.metrics.top5, r.metrics.nll);
  if (r.members.size() > 1)
    for (std::size_t i = 0; i < r.members.size(); ++i)
      std::printf("member %zu  top1 %.4f  top5 %.4f  nll %.4f  %s\n", i + 1, r.members[i].metrics.top1,
                  r.members[i].metrics.top5, r.members[i].metrics.nll, r.members[i].path.c_str());
  std::printf("per-class top1:");
  for (std::size_t k = 0; k < r.per_class_accuracy.size(); ++k)
    std::printf("%s %s %.3f", k ? "," : "", r.class_names[k].c_str(), r.per_class_accuracy[k]);
  std::printf("\n");
}

void print_comparison(const std::vector<pipeline::EvalResult>& rows) {
  const std::size_t members = rows.front().members.size();
  std::printf("\n%-11s %9s %8s %8s %8s %10s", "views", "views/img", "top1", "top5", "nll", "images/s");
  if (members > 1)
    for (std::size_t i = 0; i < members; ++i) std::printf("  member%zu", i + 1);
  std::printf("\n");
  for (const auto& r : rows) {
    const std::string name = r.views.substr(0, r.views.find('('));
    std::printf("%-11s %9d %8.4f %8.4f %8.4f %10.1f", name.c_str(), r.views_per_image, r.metrics.top1,
                r.metrics.top5, r.metrics.nll, r.images_per_second);
    if (members > 1)
      for (const auto& m : r.members) std::printf("  %7.4f", m.metrics.top1);
    std::printf("\n");
  }
  if (members > 1) std::printf("(member columns: top1 of each member alone, same views)\n");
}

void run_eval(const EvalCommand& command) {
  single_threaded_opencv();
  pipeline::EvalConfig config = command.config;
  if (!command.scales.empty()) config.scales = parse_scales(command.scales);
  if (config.data.empty()) throw ConfigError("augflow eval needs --data SRC");
  auto log = [](const std::string& line) { std::cerr << line << "\n"; };

  const pipeline::EvalResult main = pipeline::evaluate(config, log);
  print_result(main);
  nlohmann::json report = result_json(main);
  report["images"] = main.images;
  report["skipped_files"] = main.skipped_files;
  report["average"] = config.average;
  report["per_class_accuracy"] = nlohmann::json::object();
  for (std::size_t k = 0; k < main.class_names.size(); ++k)
    report["per_class_accuracy"][main.class_names[k]] = main.per_class_accuracy[k];
  report["class_names"] = main.class_names;
  report["confusion"] = main.confusion;

  if (command.compare) {
    std::vector<pipeline::EvalResult> rows;
    for (const char* mode : {"center", "flip", "tencrop", "multiscale"}) {
      pipeline::EvalConfig other = config;
      other.views = mode;
      other.out.clear();
      // The main run already measured this view set when it asked for it or auto chose it for
      // every member.
      const bool same = config.views == mode ||
                        (config.views == pipeline::kAutoViews &&
                         std::all_of(main.members.begin(), main.members.end(), [&](const pipeline::MemberResult& m) {
                           return m.views.rfind(std::string(mode) + "(", 0) == 0;
                         }));
      rows.push_back(same ? main : pipeline::evaluate(other, [](const std::string&) {}));
    }
    print_comparison(rows);
    // More views cost more time; one that loses to the centre crop also costs accuracy: the
    // training did not make those views look like what the model learned from.
    const double center = rows.front().metrics.top1;
    report["compare"] = nlohmann::json::array();
    for (const auto& r : rows) {
      nlohmann::json row = result_json(r);
      row["loses_to_center"] = r.metrics.top1 < center;
      report["compare"].push_back(row);
      if (r.metrics.top1 < center)
        std::printf("note: %s loses to the centre crop (top1 %.4f < %.4f): the training did not make these views "
                    "useful; prefer --views %s\n",
                    r.views.substr(0, r.views.find('(')).c_str(), r.metrics.top1, center,
                    rows[1].metrics.top1 >= center ? "flip" : "center");
    }
  }
  if (!config.out.empty()) std::printf("confusion matrix and per-class accuracy in %s/\n", config.out.c_str());
  if (!command.json.empty()) write_json_report(command.json, report);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto command = std::make_shared<EvalCommand>();
  auto& c = command->config;
  auto* cmd = app.add_subcommand(
      "eval",
      "Evaluate checkpoints on labelled data, averaging out the randomness of training: dropout off,\n"
      "batch-norm running statistics, and softmax probabilities averaged over deterministic views\n"
      "(centre crop, ten crops, or ten crops at several scales). Several --model files form an\n"
      "ensemble whose probabilities are averaged (independent runs, search top-k, --snapshots of one\n"
      "run, ema.ckpt). The default views follow from the training spec the checkpoint records: which\n"
      "views (tencrop after scale augmentation at 224 pixels and more, the centre and its mirror after\n"
      "hflip, the centre otherwise) and where: after scale_crop(256,480,224) the shorter side goes to\n"
      "256 and 224 is cropped; after pad_crop the image is padded as trained and the crops are taken\n"
      "from the padded image. Examples:\n"
      "  augflow eval --data fashion-mnist:test --model runs/fm/best.ckpt --views tencrop\n"
      "  augflow eval --data photos/val --model a/best.ckpt b/best.ckpt --compare --json eval.json");
  cmd->add_option("--data", c.data,
                  "labelled data: an image folder (one sub-folder per class), a list file (path,label lines),\n"
                  "fashion-mnist or fashion-mnist:test")
      ->required();
  add_test_time_options(*cmd, c, command->scales);
  cmd->add_option("--repeats", c.repeats, "timed passes over the data; images/s is their median")
      ->capture_default_str();
  cmd->add_flag("--compare", command->compare,
                "also evaluate center, flip, tencrop and multiscale and print a table (each member vs the\n"
                "ensemble); a view set whose top1 is below the centre crop's gets a note (JSON: loses_to_center)");
  cmd->add_option("--out", c.out, "folder for confusion.csv, confusion.png and per_class.csv");
  cmd->add_option("--json", command->json,
                  "write a JSON report: top1, top5, nll, images_per_second, views_per_image, members,\n"
                  "images, skipped_files, per_class_accuracy, confusion, compare (with --compare)");
  cmd->callback([command] { run_eval(*command); });
}

}  // namespace augflow::apps
