#include "pipeline/plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.hpp"

namespace augflow::pipeline {
namespace {

const cv::Scalar kTrain(200, 110, 30);  // blue (BGR)
const cv::Scalar kVal(20, 130, 240);    // orange
const cv::Scalar kInk(40, 40, 40);

std::string label(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%.3g", v);
  return text;
}

/// One panel: axes, a light grid, the two series and a legend.
void panel(cv::Mat& canvas, cv::Rect area, const std::string& title, const std::vector<double>& train,
           const std::vector<double>& val) {
  const int left = 55, right = 15, top = 30, bottom = 35;
  const cv::Rect plot(area.x + left, area.y + top, area.width - left - right, area.height - top - bottom);
  double lo = 1e300, hi = -1e300;
  for (const auto* series : {&train, &val})
    for (double v : *series)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (lo > hi) lo = 0, hi = 1;
  if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
  const double pad = 0.05 * (hi - lo);
  lo -= pad;
  hi += pad;
  const std::size_t n = std::max(train.size(), val.size());
  auto x_of = [&](std::size_t i) {
    return plot.x + (n <= 1 ? plot.width / 2 : static_cast<int>(std::lround(i * (plot.width - 1.0) / (n - 1))));
  };
  auto y_of = [&](double v) { return plot.y + static_cast<int>(std::lround((hi - v) / (hi - lo) * (plot.height - 1))); };
  for (int k = 0; k <= 4; ++k) {
    const double v = lo + (hi - lo) * k / 4;
    cv::line(canvas, {plot.x, y_of(v)}, {plot.br().x, y_of(v)}, cv::Scalar::all(225));
    cv::putText(canvas, label(v), {area.x + 4, y_of(v) + 4}, cv::FONT_HERSHEY_SIMPLEX, 0.35, kInk, 1, cv::LINE_AA);
  }
  cv::rectangle(canvas, plot, kInk);
  cv::putText(canvas, title, {plot.x, area.y + 20}, cv::FONT_HERSHEY_SIMPLEX, 0.5, kInk, 1, cv::LINE_AA);
  cv::putText(canvas, "epoch 1.." + std::to_string(n), {plot.x, plot.br().y + 22}, cv::FONT_HERSHEY_SIMPLEX, 0.4,
              kInk, 1, cv::LINE_AA);
  for (const auto& [series, colour] : {std::pair{&train, kTrain}, std::pair{&val, kVal}}) {
    for (std::size_t i = 0; i < series->size(); ++i) {
      if (!std::isfinite((*series)[i])) continue;
      const cv::Point p(x_of(i), y_of((*series)[i]));
      cv::circle(canvas, p, 3, colour, cv::FILLED, cv::LINE_AA);
      if (i > 0 && std::isfinite((*series)[i - 1]))
        cv::line(canvas, {x_of(i - 1), y_of((*series)[i - 1])}, p, colour, 2, cv::LINE_AA);
    }
  }
  cv::putText(canvas, "train", {plot.br().x - 90, plot.y + 16}, cv::FONT_HERSHEY_SIMPLEX, 0.4, kTrain, 1, cv::LINE_AA);
  cv::putText(canvas, "val", {plot.br().x - 40, plot.y + 16}, cv::FONT_HERSHEY_SIMPLEX, 0.4, kVal, 1, cv::LINE_AA);
}

/// cv::imwrite reports some failures by returning false and others by throwing.
void write_png(const std::string& path, const cv::Mat& canvas, const std::string& what) {
  bool ok = false;
  try {
    ok = cv::imwrite(path, canvas);
  } catch (const cv::Exception& e) {
    throw IoError(path + ": cannot write " + what + ": " + e.what());
  }
  if (!ok) throw IoError(path + ": cannot write " + what);
}

}  // namespace

void write_curves(const std::string& path, const std::vector<EpochMetrics>& history) {
  cv::Mat canvas(320, 960, CV_8UC3, cv::Scalar::all(255));
  std::vector<double> train_loss, val_loss, train_acc, val_acc;
  for (const auto& m : history) {
    train_loss.push_back(m.train_loss);
    val_loss.push_back(m.val_loss);
    train_acc.push_back(m.train_accuracy);
    val_acc.push_back(m.val_accuracy);
  }
  panel(canvas, {0, 0, 480, 320}, "loss", train_loss, val_loss);
  panel(canvas, {480, 0, 480, 320}, "accuracy", train_acc, val_acc);
  write_png(path, canvas, "the curves");
}

void write_confusion_png(const std::string& path, const std::vector<std::vector<std::size_t>>& confusion,
                         const std::vector<std::string>& class_names) {
  const int n = static_cast<int>(confusion.size());
  const bool counts = n <= 20;
  const int cell = n <= 10 ? 48 : (n <= 20 ? 32 : std::max(4, 640 / std::max(1, n)));
  const int label_width = counts ? 130 : 10, top = 40;
  cv::Mat canvas(top + n * cell + 30, label_width + n * cell + 20, CV_8UC3, cv::Scalar::all(255));
  cv::putText(canvas, "true class (rows) vs predicted (columns)", {label_width, 24}, cv::FONT_HERSHEY_SIMPLEX, 0.45,
              kInk, 1, cv::LINE_AA);
  for (int t = 0; t < n; ++t) {
    std::size_t row_total = 0;
    for (std::size_t v : confusion[t]) row_total += v;
    if (counts && t < static_cast<int>(class_names.size()))
      cv::putText(canvas, class_names[t].substr(0, 16), {4, top + t * cell + cell / 2 + 4}, cv::FONT_HERSHEY_SIMPLEX,
                  0.38, kInk, 1, cv::LINE_AA);
    for (int p = 0; p < n; ++p) {
      const double share = row_total ? static_cast<double>(confusion[t][p]) / row_total : 0.0;
      // White to blue for the diagonal (right), white to orange-red off it (mistakes).
      const cv::Scalar full = t == p ? cv::Scalar(170, 90, 20) : cv::Scalar(30, 80, 230);
      const cv::Scalar colour = cv::Scalar::all(255) * (1.0 - share) + full * share;
      const cv::Rect box(label_width + p * cell, top + t * cell, cell, cell);
      cv::rectangle(canvas, box, colour, cv::FILLED);
      cv::rectangle(canvas, box, cv::Scalar::all(210));
      if (counts && confusion[t][p] > 0)
        cv::putText(canvas, std::to_string(confusion[t][p]), {box.x + 3, box.y + cell / 2 + 4},
                    cv::FONT_HERSHEY_SIMPLEX, 0.33, share > 0.5 ? cv::Scalar::all(255) : kInk, 1, cv::LINE_AA);
    }
  }
  write_png(path, canvas, "the confusion matrix");
}

}  // namespace augflow::pipeline
