// Training curves as a PNG (RUNDIR/curves.png): loss and accuracy per epoch, train vs val.
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

}  // namespace augflow::pipeline
