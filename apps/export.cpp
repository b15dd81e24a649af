// augflow export: write a trained model as an ONNX file for other programs.
#include <cstdio>
#include <filesystem>

#include "apps/commands.hpp"
#include "common/error.hpp"
#include "pipeline/model_io.hpp"

namespace augflow::apps {
namespace {

struct ExportCommand {
  std::string model;
  std::string out;
};

void run_export(const ExportCommand& command) {
  const model::Checkpoint checkpoint = pipeline::load_model(command.model);
  const auto metadata = pipeline::export_model(checkpoint, command.out);
  std::size_t weights = 0;
  for (const auto& [name, tensor] : checkpoint.params) weights += tensor.size();
  std::printf("wrote %s: %s, input %dx%dx%d, %d classes, %zu weights, %ju bytes (ONNX opset 13, checked)\n",
              command.out.c_str(), checkpoint.model_spec.c_str(), checkpoint.input.c, checkpoint.input.h,
              checkpoint.input.w, checkpoint.classes, weights,
              static_cast<std::uintmax_t>(std::filesystem::file_size(command.out)));
  // What another program must do to an image first (examples/onnx_opencv.cpp takes these).
  const auto list = [](std::string json) { return json.substr(1, json.size() - 2); };  // "[0.5]" -> "0.5"
  std::printf("preprocessing: %dx%d %s planes of (pixel / 255 - mean) / std, mean %s, std %s\n", checkpoint.input.w,
              checkpoint.input.h, metadata.at("channel_order").c_str(), list(metadata.at("normalize_mean")).c_str(),
              list(metadata.at("normalize_std")).c_str());
  std::printf("for examples/onnx_opencv.cpp: %s IMAGE %d %d %s %s\n", command.out.c_str(), checkpoint.input.h,
              checkpoint.input.c, list(metadata.at("normalize_mean")).c_str(), list(metadata.at("normalize_std")).c_str());
}

}  // namespace

void add_export_command(CLI::App& app) {
  auto command = std::make_shared<ExportCommand>();
  auto* cmd = app.add_subcommand(
      "export",
      "Write a trained model as an ONNX file (opset 13), for OpenCV's DNN module, ONNX Runtime, or\n"
      "augflow predict/eval/train --init elsewhere. The file holds the test-time network (batch norm with\n"
      "its running statistics, dropout off) with a dynamic batch dimension, input 'input' (N x C x H x W,\n"
      "float) and output 'logits' (N x classes), and metadata: class names, input shape, channel order\n"
      "(RGB planes for colour models), the normalisation (mean and std of pixel/255), the model and\n"
      "training specs. The ONNX checker validates the graph before the file is written (atomically).\n"
      "Example:\n"
      "  augflow export runs/r1/best.ckpt --out model.onnx");
  cmd->add_option("model", command->model, "the model to export: a checkpoint (.ckpt), or an ONNX file to rewrite")
      ->required();
  cmd->add_option("--out", command->out, "the ONNX file to write (e.g. model.onnx)")->required();
  cmd->callback([command] { run_export(*command); });
}

}  // namespace augflow::apps
