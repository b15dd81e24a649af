// Plots as PNGs: training curves (RUNDIR/curves.png: loss and accuracy per epoch, train vs val),
// the confusion matrix of an evaluation and the scatter of a hyperparameter search (DIR/scatter.png).
//
// API: internal to augflow::pipeline; not installed.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace augflow::pipeline {

struct EpochMetrics {
  double train_loss = 0;
  double train_accuracy = 0;
  double val_loss = 0;
  double val_accuracy = 0;
};

/// Draws two panels (loss, accuracy) over epochs 1..N, train in blue and val in orange, and
/// writes them to `path`. Throws IoError when the file cannot be written.
void write_curves(const std::string& path, const std::vector<EpochMetrics>& history);

/// Draws a confusion matrix (rows: true class, columns: predicted) as a heat map, each row
/// shaded by its own total so that small classes stay readable, with the counts written in
/// the cells when there are at most 20 classes. Throws IoError when the file cannot be written.
void write_confusion_png(const std::string& path, const std::vector<std::vector<std::size_t>>& confusion,
                         const std::vector<std::string>& class_names);
/// One axis of a search scatter: a parameter and its range (log scale for log parameters).
struct ScatterAxis {
  std::string name;
  double lo = 0;
  double hi = 1;
  bool log = false;
};

/// One trial: its value on every axis, its validation accuracy (NaN: the trial failed).
struct ScatterPoint {
  std::vector<double> values;
  double accuracy = 0;
  int stage = 1;       ///< stage 1 is drawn as circles, later stages as squares
  bool best = false;   ///< ringed
};

/// cs231n's hyperparameter figure: one panel for each pair of axes (or accuracy over the one
/// axis there is), each trial a marker coloured by validation accuracy (viridis, with a colour
/// bar from the worst to the best), failed trials as grey crosses. Throws IoError when the file
/// cannot be written.
void write_scatter(const std::string& path, const std::vector<ScatterAxis>& axes,
                   const std::vector<ScatterPoint>& points);

}  // namespace augflow::pipeline
