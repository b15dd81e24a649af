// Helpers shared by the subcommands: threading set-up, reports, the spec help text.
#include <algorithm>
#include <fstream>

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

#include "apps/commands.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"

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

const std::string& aug_spec_help() {
  static const std::string text =
      "Augmentation spec: steps joined by '|', e.g.\n"
      "  'hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)'\n"
      "Arguments are positional (in the order below) or named; ranges are lo:hi; lists [a,b].\n"
      "Steps:\n" + augment::spec_help();
  return text;
}

}  // namespace augflow::apps
