// Fine-tuning: train --init FILE (a checkpoint or an ONNX file) starts from the file's weights,
// replaces its head when the data has another class count, and with --freeze keeps the body as
// the file has it.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "common/error.hpp"
#include "model/net.hpp"
#include "pipeline/model_io.hpp"
#include "pipeline/trainer.hpp"
#include "tests/model_fixtures.hpp"

namespace augflow::test {
namespace {

namespace fs = std::filesystem;

bool same_values(const model::Tensor& a, const model::Tensor& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// A trained-looking model file: random weights of `spec` for 24 x 24 RGB inputs, exported as
/// ONNX (so the ONNX path is the one exercised), with `classes` classes.
std::string pretrained_onnx(const TempDir& dir, const std::string& spec, int classes) {
  const std::string ckpt = write_checkpoint(dir, "pre.ckpt", spec, 24, classes,
                                            "pad_crop(2,24) | hflip | normalize(none)", 99);
  const std::string onnx = (dir.path() / "pre.onnx").string();
  pipeline::export_model(model::load_checkpoint(ckpt), onnx);
  return onnx;
}

TEST(FineTune, InitialWeightsComeFromTheFileAndAFreshHeadFitsTheData) {
  TempDir dir;
  const std::string onnx = pretrained_onnx(dir, "conv4k3p1-bn-relu-pool2-fc5", 5);
  const model::Checkpoint init = pipeline::load_model(onnx);

  for (const int classes : {5, 3}) {
    SCOPED_TRACE(classes);
    bool replaced = false;
    const model::ModelSpec spec = pipeline::fine_tuning_spec(init, onnx, classes, replaced);
    EXPECT_EQ(replaced, classes != 5);
    EXPECT_EQ(model::print_model_spec(spec), "conv4k3p1-bn-relu-pool2-fc" + std::to_string(classes));
    model::Net net(spec, {0, 3, 24, 24}, classes);
    net.initialize(7);
    model::Checkpoint fresh;
    model::store_net(net, fresh);
    pipeline::load_initial_weights(net, init, onnx, !replaced);
    model::Checkpoint loaded;
    model::store_net(net, loaded);
    for (const auto& [name, tensor] : loaded.params) {
      const bool head = name.rfind("4.", 0) == 0;
      const model::Tensor& expected = head && replaced ? fresh.params.at(name) : init.params.at(name);
      EXPECT_TRUE(same_values(tensor, expected)) << name;
    }
    for (const auto& [name, tensor] : loaded.state) EXPECT_TRUE(same_values(tensor, init.state.at(name))) << name;
  }
}

TEST(FineTune, MismatchesAreErrorsThatSayWhatToDo) {
  TempDir dir;
  const std::string onnx = pretrained_onnx(dir, "conv4k3p1-relu-pool2-fc5", 5);
  const model::Checkpoint init = pipeline::load_model(onnx);
  // The fc after a flatten was built for 24 x 24 inputs: 16 x 16 does not fit it.
  bool replaced = false;
  model::Net smaller(pipeline::fine_tuning_spec(init, onnx, 5, replaced), {0, 3, 16, 16}, 5);
  expect_throws_with([&] { pipeline::load_initial_weights(smaller, init, onnx, true); }, "built for 3x24x24 inputs");
  // A --model with other layers than the file's.
  model::Net other(model::parse_model_spec("conv4k3p1-bn-relu-pool2-fc5", 5), {0, 3, 24, 24}, 5);
  expect_throws_with([&] { pipeline::load_initial_weights(other, init, onnx, true); }, "leave --model out");
  // A file whose last layer is no fc head.
  model::Checkpoint headless = init;
  headless.model_spec = "conv4k3p1-relu-gap";
  expect_throws_with([&] { pipeline::fine_tuning_spec(headless, onnx, 5, replaced); }, "not the fc head");
}

TEST(FineTune, TrainingTheHeadOfAnOnnxModelKeepsItsBodyAsTheFileHasIt) {
  // Pretrained on 5 classes; the data (red vs blue) has 2: the head is replaced, the body frozen.
  TempDir dir;
  const std::string onnx = pretrained_onnx(dir, "conv4k3p1-bn-relu-pool2-fc8-relu-fc5", 5);
  write_colour_folder(dir, 12);
  pipeline::TrainConfig c = learning_colour_config(dir);
  c.aug = "pad_crop(2,24) | hflip | normalize(none)";
  c.model.clear();  // the file's network
  c.init = onnx;
  c.freeze = -2;    // conv, bn, relu, pool, fc8 stay as the file has them; relu and the new fc2 head train
  std::vector<std::string> lines;
  const auto summary = pipeline::train(c, [&](const std::string& line) { lines.push_back(line); });
  EXPECT_GE(summary.best_val_accuracy, 0.9) << "the new head learns red vs blue on the file's features";
  bool said = false;
  for (const auto& line : lines) said |= line.find("5-class head is replaced by a fresh fc2") != std::string::npos;
  EXPECT_TRUE(said) << "the log says the head was replaced";

  const model::Checkpoint init = pipeline::load_model(onnx);
  const model::Checkpoint best = model::load_checkpoint(c.out + "/best.ckpt");
  EXPECT_EQ(best.model_spec, "conv4k3p1-bn-relu-pool2-fc8-relu-fc2");
  for (const auto& [name, tensor] : best.params) {
    const bool head = name.rfind("6.", 0) == 0;
    if (head) {
      EXPECT_EQ(tensor.shape().c, 2) << name;
    } else {
      EXPECT_TRUE(same_values(tensor, init.params.at(name))) << name << " of the frozen body changed";
    }
  }
  for (const auto& [name, tensor] : best.state) EXPECT_TRUE(same_values(tensor, init.state.at(name))) << name;
  // The run folder records where the weights came from, and a resume does not need the file.
  EXPECT_EQ(read_json(fs::path(c.out) / "config.json").at("init"), onnx);
}

}  // namespace
}  // namespace augflow::test
