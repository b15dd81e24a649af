#include "pipeline/model_io.hpp"

#include <nlohmann/json.hpp>

#include "augment/spec.hpp"
#include "common/error.hpp"
#include "model/net.hpp"
#include "model/onnx.hpp"

namespace augflow::pipeline {
namespace {

bool has_extension(const std::string& path, const std::string& extension) {
  if (path.size() < extension.size()) return false;
  std::string tail = path.substr(path.size() - extension.size());
  for (char& ch : tail) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return tail == extension;
}

}  // namespace

std::string imagenet_augmentation(int size) {
  return "center_crop(" + std::to_string((size * 256 + 112) / 224) + "," + std::to_string(size) +
         ") | normalize(imagenet)";
}

model::Checkpoint load_model(const std::string& path) {
  if (!has_extension(path, ".onnx")) return model::load_checkpoint(path);
  model::OnnxModel onnx = model::import_onnx(path);
  model::Checkpoint& ckpt = onnx.checkpoint;
  if (ckpt.augmentation.empty()) ckpt.augmentation = imagenet_augmentation(ckpt.input.h);
  return std::move(ckpt);
}

std::map<std::string, std::string> export_model(const model::Checkpoint& checkpoint, const std::string& path) {
  const augment::Pipeline training =
      augment::parse_pipeline_any(checkpoint.augmentation.empty() ? "normalize(none)" : checkpoint.augmentation);
  const augment::Normalize& normalize = training.normalize();
  const int channels = checkpoint.input.c;
  nlohmann::json mean = nlohmann::json::array(), std = nlohmann::json::array();
  if (channels == 1) {
    // Grey images are normalised with the means of the three channels' values (augment/normalize.cpp).
    const auto& m = normalize.mean();
    const auto& s = normalize.std();
    mean.push_back((m[0] + m[1] + m[2]) / 3);
    std.push_back((s[0] + s[1] + s[2]) / 3);
  } else {
    for (int c = 0; c < 3; ++c) {
      mean.push_back(normalize.mean()[c]);
      std.push_back(normalize.std()[c]);
    }
  }
  model::OnnxMetadata metadata{
      {"augflow_version", AUGFLOW_VERSION_STRING},
      {"channel_order", channels == 1 ? "grey" : "RGB"},
      {"pixel_scale", "values are pixel / 255, then (value - normalize_mean) / normalize_std per channel"},
      {"normalize_mean", mean.dump()},
      {"normalize_std", std.dump()},
  };
  model::export_onnx(checkpoint, metadata, path);
  return metadata;
}

model::ModelSpec fine_tuning_spec(const model::Checkpoint& init, const std::string& path, int classes,
                                  bool& head_replaced) {
  model::ModelSpec spec = model::parse_model_spec(init.model_spec, init.classes);
  model::LayerSpec& head = spec.layers.back();
  if (head.kind != "fc")
    throw DataError(path, "its last layer is " + head.kind + ", not the fc head that fine-tuning replaces for the data's classes");
  head_replaced = init.classes != classes;
  if (head_replaced) head.args["out"] = classes;
  return spec;
}

void load_initial_weights(model::Net& net, const model::Checkpoint& init, const std::string& path, bool keep_head) {
  model::Checkpoint merged;
  model::store_net(net, merged);  // the run's own initialisation: what the file does not replace
  const std::string head = std::to_string(net.layer_count() - 1) + ".";
  const auto take = [&](std::map<std::string, model::Tensor>& mine, const std::map<std::string, model::Tensor>& theirs) {
    for (const auto& [name, tensor] : theirs) {
      if (!keep_head && name.rfind(head, 0) == 0) continue;
      const auto it = mine.find(name);
      if (it == mine.end())
        throw ShapeError("--init " + path + ": the file has " + name + " but the model " +
                         model::print_model_spec(net.spec()) + " has no such tensor; leave --model out to take the file's");
      if (it->second.shape() != tensor.shape())
        throw ShapeError("--init " + path + ": the file has " + name + " " + tensor.shape().str() + " but the model has " +
                         it->second.shape().str() + "; the file's network was built for " + std::to_string(init.input.c) + "x" +
                         std::to_string(init.input.h) + "x" + std::to_string(init.input.w) +
                         " inputs (give --aug a crop of that size)");
      it->second = tensor;
    }
  };
  take(merged.params, init.params);
  take(merged.state, init.state);
  model::restore_net(net, merged);
}

}  // namespace augflow::pipeline
