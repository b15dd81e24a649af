// augflow_make_images: writes a generated ImageFolder data set (no third-party images), for
// benchmarks, tests and demos: DIR/<class>/img_NNNNNN.jpg (JPEG quality 90).
//
//   augflow_make_images --out DIR --count N [--kind fields|objects] [--classes K]
//                       [--width W] [--height H] [--seed S] [--split X] [--threads T]
//
// Two kinds of image, each a pure function of (seed, index), so the files do not depend on the
// thread count or order:
// - fields (default): a smooth colour field whose hue and orientation depend on the class,
//   plus per-pixel noise, so JPEG sizes and decode times are like a photo's rather than a flat
//   image's. Sizes vary by up to +-25% around W x H. Easy to classify: for loader benchmarks.
// - objects: a CIFAR-like folder of shapes (data/objects.hpp) that a small CNN needs many
//   epochs to learn, for time-to-accuracy benchmarks and fine-tuning demos. Exactly W x H.
// Image i has label i % K. --split puts the last images into DIR/test and the others into
// DIR/train, so a split's train folder holds the same files as an unsplit, smaller run.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

#include "common/rng.hpp"
#include "data/objects.hpp"

namespace {

cv::Mat colour_field_image(std::uint64_t seed, std::uint64_t index, int label, int width, int height) {
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

/// One kind of generated image: its defaults, its class folder names and its image function.
struct Kind {
  int max_classes, default_classes, default_width, default_height;
  std::function<std::string(int label)> class_name;
  std::function<cv::Mat(std::uint64_t seed, std::uint64_t index, int label, int width, int height)> image;
};

Kind make_kind(const std::string& name) {
  if (name == "objects")
    return {static_cast<int>(augflow::data::kObjectClassNames.size()), 10, 32, 32,
            [](int label) { return std::string(augflow::data::kObjectClassNames[label]); },
            augflow::data::objects_image};
  return {1000, 2, 320, 240, [](int label) { return "class_" + std::to_string(label); }, colour_field_image};
}

/// How many of `count` images go to the test folder: X < 1 is a fraction, X >= 1 a number.
std::optional<std::size_t> test_count(double split, std::size_t count, std::string& error) {
  if (split == 0) return std::nullopt;
  const double n = split < 1 ? std::round(split * static_cast<double>(count)) : split;
  if (split < 0 || (split >= 1 && split != std::floor(split)))
    error = "--split takes a fraction in (0, 1) or a whole number of test images";
  else if (n < 1 || n >= static_cast<double>(count))
    error = "--split leaves no train or no test image: " + std::to_string(static_cast<long long>(n)) + " of " +
            std::to_string(count) + " would be test images";
  if (!error.empty()) return std::nullopt;
  return static_cast<std::size_t>(n);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Write a generated ImageFolder data set of JPEG files, DIR/<class>/img_NNNNNN.jpg (quality 90).\n"
      "Image i has class i % K and is a pure function of (seed, i): the same options give the\n"
      "same bytes on any number of threads.\n\n"
      "Kinds:\n"
      "  fields   smooth colour fields, hue and orientation set by the class, sizes +-25% around\n"
      "           W x H; classes class_0, class_1, ... Easy: for loader and decode benchmarks.\n"
      "  objects  CIFAR-like photos of shapes (circle, triangle, square, star, ring, cross,\n"
      "           crescent, heart, arrow, hexagon), exactly W x H. The class is the shape only:\n"
      "           random pose (rotation within +-25 degrees, size 0.4-0.9 of the frame, stretch,\n"
      "           position), random object and background colours, textured background (noise,\n"
      "           stripes or gradient), 1-4 distractor strokes and blobs (some occluding),\n"
      "           lighting, blur, noise. Hard: for time-to-accuracy benchmarks and fine-tuning.\n\n"
      "Standard benchmark folder (50,000 train + 10,000 test, 32x32):\n"
      "  augflow_make_images --kind objects --out DIR --count 60000 --split 10000\n"};
  std::string out, kind_name = "fields";
  std::size_t count = 1000;
  std::optional<int> classes, width, height;
  std::uint64_t seed = 0;
  double split = 0;
  int threads = 0;
  app.add_option("--out", out, "folder to write (class sub-folders, or train/ and test/ with --split, are created)")
      ->required();
  app.add_option("--kind", kind_name, "what to draw: fields or objects (above)")
      ->capture_default_str()
      ->check(CLI::IsMember({"fields", "objects"}));
  app.add_option("--count", count, "number of images in all (train and test together with --split)")
      ->capture_default_str();
  app.add_option("--classes", classes, "number of classes K; default 2 for fields, 10 for objects (at most 10)")
      ->check(CLI::Range(1, 1000));
  app.add_option("--width", width, "width: mean for fields (default 320), exact for objects (default 32)")
      ->check(CLI::Range(8, 8192));
  app.add_option("--height", height, "height: mean for fields (default 240), exact for objects (default 32)")
      ->check(CLI::Range(8, 8192));
  app.add_option("--seed", seed, "seed; another seed gives another data set of the same kind")->capture_default_str();
  app.add_option("--split", split,
                 "also write a held-out test set: X in (0,1) is the test fraction, a whole X >= 1 the number "
                 "of test images. The last images (balanced over classes) go to DIR/test, the rest to "
                 "DIR/train. Default 0: no split, classes directly in DIR")
      ->capture_default_str();
  app.add_option("--threads", threads, "worker threads; 0 = all cores (the output is the same)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);

  const Kind kind = make_kind(kind_name);
  const int k = classes.value_or(kind.default_classes);
  if (k > kind.max_classes) {
    std::fprintf(stderr, "error: --kind %s has at most %d classes (got --classes %d)\n", kind_name.c_str(),
                 kind.max_classes, k);
    return 2;
  }
  std::string error;
  const std::optional<std::size_t> tests = test_count(split, count, error);
  if (!error.empty()) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 2;
  }
  const int w = width.value_or(kind.default_width), h = height.value_or(kind.default_height);
  const std::size_t first_test = tests ? count - *tests : count;
  auto folder = [&](std::size_t i) {
    const auto root = !tests ? std::filesystem::path(out) : std::filesystem::path(out) / (i < first_test ? "train" : "test");
    return root / kind.class_name(static_cast<int>(i % k));
  };
  // Folders first (one per class that gets an image, in each part), then the images in parallel.
  for (std::size_t i = 0; i < std::min<std::size_t>(count, k); ++i) std::filesystem::create_directories(folder(i));
  if (tests)
    for (std::size_t i = first_test; i < std::min<std::size_t>(count, first_test + k); ++i)
      std::filesystem::create_directories(folder(i));

  std::optional<tbb::global_control> limit;
  if (threads > 0) limit.emplace(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(threads));
  const std::vector<int> jpeg_quality{cv::IMWRITE_JPEG_QUALITY, 90};
  std::atomic<std::size_t> failed{count};  // the lowest index that could not be written
  tbb::parallel_for(std::size_t{0}, count, [&](std::size_t i) {
    char name[32];
    std::snprintf(name, sizeof name, "img_%06zu.jpg", i);
    const int label = static_cast<int>(i % k);
    if (!cv::imwrite((folder(i) / name).string(), kind.image(seed, i, label, w, h), jpeg_quality)) {
      std::size_t seen = failed.load();
      while (i < seen && !failed.compare_exchange_weak(seen, i)) {
      }
    }
  });
  if (failed.load() < count) {
    char name[32];
    std::snprintf(name, sizeof name, "img_%06zu.jpg", failed.load());
    std::fprintf(stderr, "error: cannot write %s\n", (folder(failed.load()) / name).c_str());
    return 1;
  }
  if (tests)
    std::printf("wrote %zu images in %d classes to %s (%zu in train, %zu in test)\n", count, k, out.c_str(),
                first_test, *tests);
  else
    std::printf("wrote %zu images in %d classes to %s\n", count, k, out.c_str());
  return 0;
}
