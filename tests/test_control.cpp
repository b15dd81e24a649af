// Babysitting a run: RUNDIR/control.json, re-read at every epoch start, changes the learning
// rate or stops the run; each change is logged, and a bad file is ignored with a warning.
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "pipeline/trainer.hpp"
#include "tests/fixtures.hpp"

namespace augflow::pipeline {
namespace {

void write_control(const std::string& out, const std::string& text) {
  std::ofstream(out + "/control.json") << text;
}

/// The lr column of each metrics.csv row.
std::vector<double> lr_column(const std::string& out) {
  std::ifstream in(out + "/metrics.csv");
  std::string line;
  std::getline(in, line);
  std::vector<double> lrs;
  while (std::getline(in, line)) {
    double lr = 0;
    if (std::sscanf(line.c_str(), "%*d,%*f,%*f,%*f,%*f,%lf", &lr) == 1) lrs.push_back(lr);
  }
  return lrs;
}

/// A linear classifier on a generated folder: epochs are quick, so control.json is read often.
TrainConfig linear_run(const test::TempDir& dir, int images_per_class, int epochs) {
  test::write_colour_folder(dir, images_per_class);
  TrainConfig c;
  c.train = (dir.path() / "data").string();
  c.model = "fc2";
  c.aug = "pad_crop(0,32) | normalize(none)";
  c.epochs = epochs;
  c.lr = 0.01;
  c.out = (dir.path() / "run").string();
  return c;
}

TEST(Control, SetsTheLearningRateAndStopsTheRun) {
  test::TempDir dir;
  TrainConfig c = linear_run(dir, 6, 5);
  c.batch = 4;
  std::vector<std::string> lines;
  const auto summary = train(c, [&](const std::string& line) {
    lines.push_back(line);
    // A person watching the log edits the file between epochs.
    if (line.rfind("epoch 1/5", 0) == 0) write_control(c.out, "{\"lr\": 0.002}");
    if (line.rfind("epoch 2/5", 0) == 0) write_control(c.out, "{\"lr\": 0.002, \"lr_typo\": 1}");
    if (line.rfind("epoch 3/5", 0) == 0) write_control(c.out, "{\"lr\": 0.002, \"stop\": true}");
  });
  EXPECT_EQ(summary.epochs_run, 3);
  EXPECT_TRUE(summary.stopped_early);
  EXPECT_EQ(lr_column(c.out), (std::vector<double>{0.01, 0.002, 0.002})) << "metrics.csv shows the rate used";
  auto count = [&](const std::string& needle) {
    int n = 0;
    for (const auto& line : lines) n += line.find(needle) != std::string::npos;
    return n;
  };
  EXPECT_EQ(count("control.json before epoch 2: learning rate 0.01 -> 0.002"), 1) << "logged once";
  EXPECT_EQ(count("ignored \"lr_typo\""), 1);
  EXPECT_EQ(count("control.json before epoch 4: stop requested: the run ends after epoch 3"), 1);
}

TEST(Control, AFileThatDoesNotParseIsIgnored) {
  test::TempDir dir;
  const TrainConfig c = linear_run(dir, 4, 2);
  std::filesystem::create_directories(c.out);
  write_control(c.out, "{\"lr\": 0.5");
  std::vector<std::string> lines;
  const auto summary = train(c, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_EQ(summary.epochs_run, 2);
  EXPECT_NE(lines.front().find("not valid JSON, ignored"), std::string::npos) << lines.front();
  EXPECT_EQ(lr_column(c.out), (std::vector<double>{0.01, 0.01}));
}

}  // namespace
}  // namespace augflow::pipeline
