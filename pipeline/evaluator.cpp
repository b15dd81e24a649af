#include "pipeline/evaluator.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "pipeline/plot.hpp"

namespace augflow::pipeline {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

/// Probability-space accumulation of one image's class scores into the metrics.
struct Tally {
  std::size_t images = 0, top1 = 0, top5 = 0;
  double nll = 0;
  void add(const float* probs, int classes, int label) {
    ++images;
    const float p = probs[label];
    int above = 0;  // classes strictly more probable than the true one (ties count for it)
    for (int k = 0; k < classes; ++k) above += probs[k] > p;
    top1 += above == 0;
    top5 += above < std::min(5, classes);
    nll -= std::log(std::max(static_cast<double>(p), 1e-12));
  }
  EvalMetrics metrics() const {
    if (images == 0) return {};
    return {static_cast<double>(top1) / images, static_cast<double>(top5) / images, nll / images};
  }
};

/// Throws DataError when a member's classes are not the data's (a model whose checkpoint
/// records no names only needs the same number of classes).
void check_classes(const Predictor& predictor, const Dataset& data, const std::string& source) {
  const auto classes = data.class_names.size();
  for (const auto& m : predictor.members()) {
    const auto& ck = m.checkpoint;
    if (static_cast<std::size_t>(ck.classes) == classes && (ck.class_names.empty() || ck.class_names == data.class_names))
      continue;
    std::string theirs, ours;
    for (const auto& n : ck.class_names) theirs += (theirs.empty() ? "" : ", ") + n;
    for (const auto& n : data.class_names) ours += (ours.empty() ? "" : ", ") + n;
    throw DataError(source, "its " + std::to_string(classes) + " classes (" + ours + ") differ from the " +
                                std::to_string(ck.classes) + " the model " + m.path + " was trained on (" + theirs +
                                "); evaluate on data with the same class folders");
  }
}

}  // namespace

EvalResult evaluate(const EvalConfig& c, const std::function<void(const std::string&)>& log) {
  if (c.repeats < 1) throw ConfigError("--repeats must be at least 1");
  Predictor predictor(c);
  Dataset data = open_dataset(c.data, log);
  const int classes = static_cast<int>(data.class_names.size());
  check_classes(predictor, data, c.data);
  EvalResult result;
  result.class_names = data.class_names;
  predictor.open(std::move(data), log);
  const std::size_t members = predictor.members().size();

  result.views = predictor.views();
  result.views_per_image = predictor.views_per_image();
  std::vector<double> rates;
  for (int pass = 0; pass < c.repeats; ++pass) {
    Tally total;
    std::vector<Tally> member_tally(members);
    result.confusion.assign(classes, std::vector<std::size_t>(classes, 0));
    const auto start = Clock::now();
    predictor.score(static_cast<std::uint64_t>(pass), [&](const ImageScores& s) {
      if (!s.ok()) return;  // counted by the loader's bad files
      for (std::size_t mi = 0; mi < members; ++mi) member_tally[mi].add(s.member_probs[mi].data(), classes, s.label);
      total.add(s.probs.data(), classes, s.label);
      const int predicted = static_cast<int>(std::max_element(s.probs.begin(), s.probs.end()) - s.probs.begin());
      ++result.confusion[s.label][predicted];
    });
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    rates.push_back(seconds > 0 ? total.images / seconds : 0);
    result.images = total.images;
    result.metrics = total.metrics();
    result.members.clear();
    for (std::size_t mi = 0; mi < members; ++mi) {
      const auto& m = predictor.members()[mi];
      result.members.push_back({m.path, m.views.spec, member_tally[mi].metrics()});
    }
  }
  std::sort(rates.begin(), rates.end());
  result.images_per_second = rates[rates.size() / 2];
  result.skipped_files = predictor.bad_files().count();
  if (result.skipped_files) log(predictor.bad_files().summary());
  result.per_class_accuracy.assign(classes, 0.0);
  for (int k = 0; k < classes; ++k) {
    std::size_t row = 0;
    for (std::size_t n : result.confusion[k]) row += n;
    result.per_class_accuracy[k] = row ? static_cast<double>(result.confusion[k][k]) / row : 0.0;
  }
  if (!c.out.empty()) write_confusion(c.out, result);
  return result;
}

void write_confusion(const std::string& folder, const EvalResult& r) {
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) throw IoError(folder + ": cannot create the folder: " + ec.message());
  auto open = [](const fs::path& path) {
    std::ofstream out(path);
    if (!out) throw IoError(path.string() + ": cannot write");
    return out;
  };
  auto quoted = [](const std::string& s) {
    std::string q = "\"";
    for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return q + "\"";
  };
  {
    auto out = open(fs::path(folder) / "confusion.csv");
    out << "true\\predicted";
    for (const auto& n : r.class_names) out << "," << quoted(n);
    out << "\n";
    for (std::size_t t = 0; t < r.confusion.size(); ++t) {
      out << quoted(r.class_names[t]);
      for (std::size_t n : r.confusion[t]) out << "," << n;
      out << "\n";
    }
  }
  {
    auto out = open(fs::path(folder) / "per_class.csv");
    out << "class,images,accuracy\n";
    for (std::size_t t = 0; t < r.confusion.size(); ++t) {
      std::size_t row = 0;
      for (std::size_t n : r.confusion[t]) row += n;
      out << quoted(r.class_names[t]) << "," << row << "," << r.per_class_accuracy[t] << "\n";
    }
  }
  write_confusion_png((fs::path(folder) / "confusion.png").string(), r.confusion, r.class_names);
}

}  // namespace augflow::pipeline
