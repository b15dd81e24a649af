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

namespace {

/// Pixel position along an axis of `length` pixels (log axes in log10).
double axis_fraction(const ScatterAxis& axis, double v) {
  const double lo = axis.log ? std::log10(axis.lo) : axis.lo;
  const double hi = axis.log ? std::log10(axis.hi) : axis.hi;
  const double x = axis.log ? std::log10(v) : v;
  return hi > lo ? (x - lo) / (hi - lo) : 0.5;
}

/// Tick values: every decade (or every few) on log axes, five even steps on linear ones.
std::vector<double> ticks(const ScatterAxis& axis) {
  std::vector<double> values;
  if (axis.log) {
    const int first = static_cast<int>(std::ceil(std::log10(axis.lo) - 1e-9));
    const int last = static_cast<int>(std::floor(std::log10(axis.hi) + 1e-9));
    const int step = std::max(1, (last - first) / 6 + 1);
    for (int e = first; e <= last; e += step) values.push_back(std::pow(10.0, e));
    if (values.size() < 2) values = {axis.lo, axis.hi};
  } else {
    for (int k = 0; k <= 4; ++k) values.push_back(axis.lo + (axis.hi - axis.lo) * k / 4);
  }
  return values;
}

cv::Scalar viridis(double t) {
  static const cv::Mat lut = [] {
    cv::Mat ramp(1, 256, CV_8UC1), colours;
    for (int i = 0; i < 256; ++i) ramp.at<std::uint8_t>(0, i) = static_cast<std::uint8_t>(i);
    cv::applyColorMap(ramp, colours, cv::COLORMAP_VIRIDIS);
    return colours;
  }();
  const int i = std::clamp(static_cast<int>(std::lround(t * 255)), 0, 255);
  const cv::Vec3b c = lut.at<cv::Vec3b>(0, i);
  return {static_cast<double>(c[0]), static_cast<double>(c[1]), static_cast<double>(c[2])};
}

/// One panel: x over y (y = accuracy when `y` is null).
void scatter_panel(cv::Mat& canvas, cv::Rect area, const ScatterAxis& x_axis, const ScatterAxis* y_axis, int xi,
                   int yi, const std::vector<ScatterPoint>& points, double acc_lo, double acc_hi) {
  const int left = 60, right = 15, top = 30, bottom = 40;
  const cv::Rect plot(area.x + left, area.y + top, area.width - left - right, area.height - top - bottom);
  const ScatterAxis acc_axis{"val accuracy", acc_lo, acc_hi, false};
  const ScatterAxis& ya = y_axis ? *y_axis : acc_axis;
  auto px = [&](double v) { return plot.x + static_cast<int>(std::lround(axis_fraction(x_axis, v) * (plot.width - 1))); };
  auto py = [&](double v) {
    return plot.br().y - 1 - static_cast<int>(std::lround(axis_fraction(ya, v) * (plot.height - 1)));
  };
  for (double t : ticks(x_axis)) {
    cv::line(canvas, {px(t), plot.y}, {px(t), plot.br().y}, cv::Scalar::all(230));
    cv::putText(canvas, label(t), {px(t) - 14, plot.br().y + 15}, cv::FONT_HERSHEY_SIMPLEX, 0.35, kInk, 1, cv::LINE_AA);
  }
  for (double t : ticks(ya)) {
    cv::line(canvas, {plot.x, py(t)}, {plot.br().x, py(t)}, cv::Scalar::all(230));
    cv::putText(canvas, label(t), {area.x + 4, py(t) + 4}, cv::FONT_HERSHEY_SIMPLEX, 0.35, kInk, 1, cv::LINE_AA);
  }
  cv::rectangle(canvas, plot, kInk);
  const std::string x_name = x_axis.name + (x_axis.log ? " (log)" : "");
  const std::string y_name = ya.name + (ya.log ? " (log)" : "");
  cv::putText(canvas, y_name + " over " + x_name, {plot.x, area.y + 20}, cv::FONT_HERSHEY_SIMPLEX, 0.5, kInk, 1,
              cv::LINE_AA);
  cv::putText(canvas, x_name, {plot.x + plot.width / 2 - 30, plot.br().y + 32}, cv::FONT_HERSHEY_SIMPLEX, 0.4, kInk, 1,
              cv::LINE_AA);
  // Failed trials first, then the others from worst to best, so the best are drawn on top.
  std::vector<const ScatterPoint*> order;
  for (const auto& p : points) order.push_back(&p);
  std::stable_sort(order.begin(), order.end(), [](const ScatterPoint* a, const ScatterPoint* b) {
    const double va = std::isfinite(a->accuracy) ? a->accuracy : -1, vb = std::isfinite(b->accuracy) ? b->accuracy : -1;
    return va < vb;
  });
  for (const ScatterPoint* p : order) {
    const bool failed = !std::isfinite(p->accuracy);
    if (!y_axis && failed) continue;
    const cv::Point at(px(p->values[xi]), py(y_axis ? p->values[yi] : p->accuracy));
    if (failed) {
      const cv::Scalar grey = cv::Scalar::all(160);
      cv::line(canvas, at + cv::Point(-3, -3), at + cv::Point(3, 3), grey, 1, cv::LINE_AA);
      cv::line(canvas, at + cv::Point(-3, 3), at + cv::Point(3, -3), grey, 1, cv::LINE_AA);
      continue;
    }
    const cv::Scalar colour = viridis(acc_hi > acc_lo ? (p->accuracy - acc_lo) / (acc_hi - acc_lo) : 1.0);
    if (p->stage <= 1)
      cv::circle(canvas, at, 4, colour, cv::FILLED, cv::LINE_AA);
    else
      cv::rectangle(canvas, at - cv::Point(4, 4), at + cv::Point(4, 4), colour, cv::FILLED);
    if (p->best) cv::circle(canvas, at, 9, cv::Scalar(30, 30, 220), 2, cv::LINE_AA);
  }
}

}  // namespace

void write_scatter(const std::string& path, const std::vector<ScatterAxis>& axes, const std::vector<ScatterPoint>& points) {
  std::vector<std::pair<int, int>> pairs;
  for (int i = 0; i < static_cast<int>(axes.size()); ++i)
    for (int j = i + 1; j < static_cast<int>(axes.size()); ++j) pairs.push_back({i, j});
  if (axes.size() == 1) pairs.push_back({0, -1});
  const int panel_w = 440, panel_h = 400, legend_h = 60;
  const int columns = std::max(1, std::min(3, static_cast<int>(pairs.size())));
  const int rows = std::max(1, (static_cast<int>(pairs.size()) + columns - 1) / columns);
  cv::Mat canvas(rows * panel_h + legend_h, std::max(660, columns * panel_w), CV_8UC3, cv::Scalar::all(255));
  double acc_lo = 1e300, acc_hi = -1e300;
  for (const auto& p : points)
    if (std::isfinite(p.accuracy)) acc_lo = std::min(acc_lo, p.accuracy), acc_hi = std::max(acc_hi, p.accuracy);
  if (acc_lo > acc_hi) acc_lo = 0, acc_hi = 1;
  for (std::size_t k = 0; k < pairs.size(); ++k) {
    const cv::Rect area(static_cast<int>(k % columns) * panel_w, static_cast<int>(k / columns) * panel_h, panel_w, panel_h);
    const auto [xi, yi] = pairs[k];
    scatter_panel(canvas, area, axes[xi], yi >= 0 ? &axes[yi] : nullptr, xi, yi, points, acc_lo, acc_hi);
  }
  if (pairs.empty())
    cv::putText(canvas, "no ranged parameter to plot", {20, 40}, cv::FONT_HERSHEY_SIMPLEX, 0.5, kInk, 1, cv::LINE_AA);
  // Legend: the colour bar of validation accuracy and the marker shapes.
  const int y = rows * panel_h + 15, x0 = 60, bar_w = 240;
  for (int i = 0; i < bar_w; ++i)
    cv::line(canvas, {x0 + i, y}, {x0 + i, y + 12}, viridis(static_cast<double>(i) / (bar_w - 1)));
  cv::putText(canvas, label(acc_lo), {x0 - 50, y + 11}, cv::FONT_HERSHEY_SIMPLEX, 0.4, kInk, 1, cv::LINE_AA);
  cv::putText(canvas, label(acc_hi) + " val accuracy", {x0 + bar_w + 6, y + 11}, cv::FONT_HERSHEY_SIMPLEX, 0.4, kInk, 1,
              cv::LINE_AA);
  cv::putText(canvas, "circles: stage 1, squares: later stages, ringed: best, x: failed", {x0, y + 34},
              cv::FONT_HERSHEY_SIMPLEX, 0.4, kInk, 1, cv::LINE_AA);
  write_png(path, canvas, "the scatter plot");
}

}  // namespace augflow::pipeline
