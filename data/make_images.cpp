// augflow_make_images: writes a generated ImageFolder data set (no third-party images), for
// benchmarks and tests that need many files: DIR/class_K/img_NNNNNN.jpg.
//
//   augflow_make_images --out DIR --count N [--classes K] [--width W] [--height H] [--seed S]
//
// Every image is a pure function of (seed, index): a smooth colour field whose hue and
// orientation depend on the class, plus per-pixel noise, so JPEG sizes and decode times are
// like a photo's rather than a flat image's. Sizes vary by up to +-25% around W x H.
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/rng.hpp"

namespace {

cv::Mat make_image(std::uint64_t seed, std::uint64_t index, int label, int width, int height) {
  augflow::Rng rng({seed, 0, index});
  const int w = static_cast<int>(width * rng.uniform(0.75, 1.25));
  const int h = static_cast<int>(height * rng.uniform(0.75, 1.25));
  cv::Mat image(h, w, CV_8UC3);
  const double angle = label * 0.7 + rng.uniform(-0.3, 0.3);
  const double freq = rng.uniform(1.0, 4.0);
  const double base = label * 40.0;
  for (int y = 0; y < h; ++y) {
    auto* row = image.ptr<cv::Vec3b>(y);
    for (int x = 0; x < w; ++x) {
      const double t = (std::cos(angle) * x / w + std::sin(angle) * y / h) * freq;
      const double noise = static_cast<double>(rng.next_u64() >> 58);  // 0..63
      row[x] = cv::Vec3b(cv::saturate_cast<std::uint8_t>(base + 100 * std::sin(t) + noise),
                         cv::saturate_cast<std::uint8_t>(128 + 90 * std::cos(t * 1.3) + noise),
                         cv::saturate_cast<std::uint8_t>(200 - base + 50 * std::sin(t * 0.7) + noise));
    }
  }
  return image;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write a generated ImageFolder data set of JPEG files (for benchmarks and tests)."};
  std::string out;
  std::size_t count = 1000;
  int classes = 2, width = 320, height = 240;
  std::uint64_t seed = 0;
  app.add_option("--out", out, "folder to write (class sub-folders are created)")->required();
  app.add_option("--count", count, "number of images")->capture_default_str();
  app.add_option("--classes", classes, "number of classes")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--width", width, "mean width")->capture_default_str()->check(CLI::Range(8, 8192));
  app.add_option("--height", height, "mean height")->capture_default_str()->check(CLI::Range(8, 8192));
  app.add_option("--seed", seed, "seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const std::vector<int> jpeg_quality{cv::IMWRITE_JPEG_QUALITY, 90};
  for (std::size_t i = 0; i < count; ++i) {
    const int label = static_cast<int>(i % classes);
    const auto folder = std::filesystem::path(out) / ("class_" + std::to_string(label));
    std::filesystem::create_directories(folder);
    char name[32];
    std::snprintf(name, sizeof name, "img_%06zu.jpg", i);
    if (!cv::imwrite((folder / name).string(), make_image(seed, i, label, width, height), jpeg_quality)) {
      std::fprintf(stderr, "error: cannot write %s\n", (folder / name).c_str());
      return 1;
    }
  }
  std::printf("wrote %zu images in %d classes to %s\n", count, classes, out.c_str());
  return 0;
}
