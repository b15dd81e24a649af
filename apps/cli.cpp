// Helpers shared by the subcommands: threading set-up, reports, the spec help text, and the
// test-time options of eval and predict.
#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "apps/commands.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "pipeline/predictor.hpp"

namespace augflow::apps {

void single_threaded_opencv() { cv::setNumThreads(0); }

void write_json_report(const std::string& path, const nlohmann::json& report) {
  std::ofstream file(path);
  file << report.dump(2) << "\n";
  if (!file) throw IoError(path + ": cannot write the JSON report (does the folder exist?)");
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const std::size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

std::vector<int> parse_scales(const std::string& text) {
  std::vector<int> scales;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      std::size_t used = 0;
      const int v = std::stoi(item, &used);
      if (used != item.size() || v < 1 || v > 8192) throw std::invalid_argument(item);
      scales.push_back(v);
    } catch (const std::exception&) {
      throw ConfigError("--scales '" + text + "': '" + item +
                        "' is not a positive whole number of pixels; give e.g. --scales 224,256,384,480,640");
    }
  }
  if (scales.empty()) throw ConfigError("--scales is empty; give e.g. --scales 224,256,384,480,640");
  return scales;
}

void add_test_time_options(CLI::App& cmd, pipeline::TestTimeOptions& o, std::string& scales) {
  cmd.add_option("--model", o.members,
                 "one or more model files (.ckpt checkpoints or .onnx); several form an ensemble whose\n"
                 "probabilities are averaged, each member with its own views")
      ->required()
      ->expected(1, -1);
  cmd.add_option("--views", o.views,
                 "auto: the views each model's training makes useful (tencrop after scale augmentation at\n"
                 "224 pixels and more, flip after hflip, center otherwise); center (1 view), flip (the centre\n"
                 "and its mirror: 2), tencrop (4 corners + centre, each also mirrored: 10), multiscale (ten\n"
                 "crops at each of --scales: 10 x scales), or a view spec such as\n"
                 "'tencrop(resize=288,size=224) | normalize(imagenet)'")
      ->capture_default_str();
  cmd.add_option("--scales", scales,
                 "multiscale short sides, comma-separated; default 224,256,384,480,640 for 224-pixel models,\n"
                 "otherwise R,R+R/8,R+R/4 with R the resize (e.g. 32,36,40 for Fashion-MNIST)");
  cmd.add_option("--resize", o.resize,
                 "shorter side before cropping (0: from the training spec; a value also turns off pad_crop's\n"
                 "padding)")
      ->capture_default_str();
  cmd.add_option("--crop", o.crop, "crop side (0: the model's input; any other value must equal it)")
      ->capture_default_str();
  cmd.add_option("--average", o.average, "what is averaged over a member's views: probs (softmax) or logits")
      ->capture_default_str();
  cmd.add_option("--batch", o.batch,
                 "views per forward pass (the loader batches --batch / views-per-image images); bounds memory")
      ->capture_default_str();
  cmd.add_option("--threads", o.threads, "decode and crop threads (the model's layers use the same arena)")
      ->capture_default_str();
}

const std::string& aug_spec_help() {
  static const std::string text =
      "Augmentation spec: steps joined by '|', e.g.\n"
      "  'hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)'\n"
      "Arguments are positional (in the order below) or named; ranges are lo:hi; lists [a,b].\n"
      "Steps:\n" + augment::spec_help();
  return text;
}

}  // namespace augflow::apps
