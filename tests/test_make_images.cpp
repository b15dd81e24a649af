// augflow_make_images and its objects generator (data/objects.hpp): the same bytes on any
// thread count, distinct images, balanced classes with readable names, the train/test split,
// image sizes, option errors, and that the class is the shape, not the colour (a colour-mean
// classifier stays near chance while the same classifier reads a colour-coded control).
#include <array>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "data/objects.hpp"
#include "tests/fixtures.hpp"
#include "tests/process.hpp"

namespace augflow::data {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

test::Result make_images(const std::string& args) { return test::run_program(AUGFLOW_MAKE_IMAGES, args); }

/// Every file under `root`, by path relative to it, with its bytes.
std::map<std::string, std::string> folder_bytes(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file()) files[fs::relative(entry.path(), root).string()] = test::read_text(entry.path());
  return files;
}

/// Number of files in each sub-folder of `root`.
std::map<std::string, int> class_counts(const fs::path& root) {
  std::map<std::string, int> counts;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.is_directory())
      counts[entry.path().filename().string()] =
          static_cast<int>(std::distance(fs::directory_iterator(entry.path()), fs::directory_iterator{}));
  return counts;
}

TEST(MakeImages, SameSeedGivesTheSameBytesOnAnyThreadCount) {
  TempDir dir;
  const std::string common = "--kind objects --count 300 --split 0.2 --seed 7 ";
  ASSERT_EQ(make_images(common + "--threads 1 --out " + (dir.path() / "one").string()).status, 0);
  ASSERT_EQ(make_images(common + "--threads 2 --out " + (dir.path() / "two").string()).status, 0);
  ASSERT_EQ(make_images(common + "--threads 2 --out " + (dir.path() / "again").string()).status, 0);
  const auto one = folder_bytes(dir.path() / "one");
  ASSERT_EQ(one.size(), 300u);
  EXPECT_TRUE(one == folder_bytes(dir.path() / "two"));
  EXPECT_TRUE(one == folder_bytes(dir.path() / "again"));

  // Another seed is another data set: same names, other bytes.
  ASSERT_EQ(make_images("--kind objects --count 300 --split 0.2 --seed 8 --out " + (dir.path() / "other").string())
                .status,
            0);
  const auto other = folder_bytes(dir.path() / "other");
  ASSERT_EQ(other.size(), one.size());
  int same = 0;
  for (const auto& [name, bytes] : one) same += other.at(name) == bytes;
  EXPECT_EQ(same, 0);
}

TEST(MakeImages, ObjectsFolderHasReadableBalancedClassesAndTheSize) {
  TempDir dir;
  const auto out = dir.path() / "objects";
  const auto result = make_images("--kind objects --count 250 --width 48 --height 40 --out " + out.string());
  ASSERT_EQ(result.status, 0) << result.output;
  const auto counts = class_counts(out);
  ASSERT_EQ(counts.size(), 10u);
  for (const auto name : kObjectClassNames) EXPECT_EQ(counts.at(std::string(name)), 25) << name;
  // Image i is in class i % 10, named by its index.
  EXPECT_TRUE(fs::exists(out / "circle" / "img_000000.jpg"));
  EXPECT_TRUE(fs::exists(out / "hexagon" / "img_000249.jpg"));
  EXPECT_TRUE(fs::exists(out / "star" / "img_000013.jpg"));
  for (const auto& entry : fs::recursive_directory_iterator(out)) {
    if (!entry.is_regular_file()) continue;
    const cv::Mat image = cv::imread(entry.path().string(), cv::IMREAD_UNCHANGED);
    ASSERT_FALSE(image.empty()) << entry.path();
    EXPECT_EQ(image.cols, 48) << entry.path();
    EXPECT_EQ(image.rows, 40) << entry.path();
    EXPECT_EQ(image.channels(), 3) << entry.path();
  }
  // The defaults: 32 x 32, and --classes takes the first names.
  const auto small = dir.path() / "small";
  ASSERT_EQ(make_images("--kind objects --count 12 --classes 3 --out " + small.string()).status, 0);
  EXPECT_EQ(class_counts(small), (std::map<std::string, int>{{"circle", 4}, {"square", 4}, {"triangle", 4}}));
  const cv::Mat image = cv::imread((small / "square" / "img_000002.jpg").string());
  EXPECT_EQ(image.size(), cv::Size(32, 32));
}

TEST(MakeImages, SplitHoldsOutTheLastImagesBalanced) {
  TempDir dir;
  ASSERT_EQ(make_images("--kind objects --count 120 --split 0.25 --out " + (dir.path() / "split").string()).status, 0);
  const auto train = class_counts(dir.path() / "split" / "train");
  const auto test = class_counts(dir.path() / "split" / "test");
  ASSERT_EQ(train.size(), 10u);
  ASSERT_EQ(test.size(), 10u);
  for (const auto name : kObjectClassNames) {
    EXPECT_EQ(train.at(std::string(name)), 9) << name;
    EXPECT_EQ(test.at(std::string(name)), 3) << name;
  }
  EXPECT_TRUE(fs::exists(dir.path() / "split" / "test" / "circle" / "img_000090.jpg"));
  // A whole number is a count of test images; the train part is the unsplit smaller set.
  ASSERT_EQ(make_images("--kind objects --count 120 --split 30 --out " + (dir.path() / "count").string()).status, 0);
  ASSERT_EQ(make_images("--kind objects --count 90 --out " + (dir.path() / "plain").string()).status, 0);
  EXPECT_TRUE(folder_bytes(dir.path() / "count") == folder_bytes(dir.path() / "split"));
  EXPECT_TRUE(folder_bytes(dir.path() / "count" / "train") == folder_bytes(dir.path() / "plain"));
}

TEST(MakeImages, BadOptionsAreUsageErrors) {
  TempDir dir;
  const std::string out = " --out " + (dir.path() / "x").string();
  for (const std::string args : {"--kind objects --classes 11", "--kind shapes", "--count 10 --split 1.5",
                                 "--count 10 --split 10", "--count 10 --split 0.01", "--count 10 --split -0.5"}) {
    const auto result = make_images(args + out);
    EXPECT_NE(result.status, 0) << args;
    EXPECT_FALSE(result.output.empty()) << args;
  }
  EXPECT_FALSE(fs::exists(dir.path() / "x"));
}

TEST(Objects, ImagesDifferByIndexAndScenesReplay) {
  std::set<std::string> seen;
  for (std::uint64_t i = 0; i < 200; ++i) {
    const cv::Mat image = objects_image(3, i, static_cast<int>(i % 10), 32, 32);
    ASSERT_EQ(image.type(), CV_8UC3);
    ASSERT_EQ(image.size(), cv::Size(32, 32));
    EXPECT_TRUE(seen.insert(std::string(image.datastart, image.dataend)).second) << "image " << i << " repeats";
    const cv::Mat replay = render_objects_scene(sample_objects_scene(3, i, static_cast<int>(i % 10)), 32, 32);
    EXPECT_EQ(cv::norm(image, replay, cv::NORM_INF), 0) << "image " << i;
  }
  EXPECT_THROW(sample_objects_scene(0, 0, 10), std::invalid_argument);
}

TEST(Objects, ShapesHaveTheSameSizeSoOnlyTheOutlineTellsTheClass) {
  // Every outline reaches radius 1 and no further: a class is not given away by its extent.
  for (int label = 0; label < 10; ++label) {
    double radius = 0;
    const auto outline = shape_outline(label);
    for (const auto& p : outline[0]) radius = std::max(radius, std::hypot(p.x, p.y));
    EXPECT_NEAR(radius, 1.0, 1e-6) << kObjectClassNames[label];
  }
}

// Decoys (small shapes of any class in the clutter) come at about the drawn rate, from every
// class independently of the image's, always smaller than the object, and they are drawn: the
// same scene without them renders differently.
TEST(Objects, DecoysAreSmallShapesOfAnyClassSmallerThanTheObject) {
  std::size_t distractors = 0, decoys = 0, same_class = 0, changed = 0;
  std::set<int> decoy_classes;
  for (std::uint64_t i = 0; i < 1000; ++i) {
    const int label = static_cast<int>(i % 10);
    ObjectsScene scene = sample_objects_scene(5, i, label);
    bool has_decoy = false;
    for (const auto& d : scene.distractors) {
      ++distractors;
      if (d.decoy_label < 0) continue;
      has_decoy = true;
      ++decoys;
      decoy_classes.insert(d.decoy_label);
      same_class += d.decoy_label == label;
      EXPECT_LT(d.b.x, scene.scale) << "image " << i << ": a decoy as big as the object";
      EXPECT_LE(d.b.x, 0.3);
    }
    if (has_decoy && changed < 20) {
      const cv::Mat with = render_objects_scene(scene, 32, 32);
      std::erase_if(scene.distractors, [](const Distractor& d) { return d.decoy_label >= 0; });
      changed += cv::norm(with, render_objects_scene(scene, 32, 32), cv::NORM_INF) > 0;
    }
  }
  EXPECT_NEAR(static_cast<double>(decoys) / static_cast<double>(distractors), 0.35, 0.05);
  EXPECT_EQ(decoy_classes.size(), 10u);
  EXPECT_NEAR(static_cast<double>(same_class) / static_cast<double>(decoys), 0.1, 0.05) << "independent of the label";
  EXPECT_EQ(changed, 20u) << "decoys must be drawn";
}

// Nearest class mean on the mean RGB of an image: trained on 1,000 images, tested on 1,000 others.
double colour_mean_accuracy(const std::vector<cv::Mat>& images, const std::vector<int>& labels) {
  const std::size_t half = images.size() / 2;
  std::array<cv::Scalar, 10> sum{};
  std::array<int, 10> count{};
  for (std::size_t i = 0; i < half; ++i) {
    sum[labels[i]] += cv::mean(images[i]);
    ++count[labels[i]];
  }
  int right = 0;
  for (std::size_t i = half; i < images.size(); ++i) {
    const cv::Scalar m = cv::mean(images[i]);
    int best = 0;
    double best_distance = 1e300;
    for (int c = 0; c < 10; ++c) {
      const double d = cv::norm(m - sum[c] / count[c]);
      if (d < best_distance) best_distance = d, best = c;
    }
    right += best == labels[i];
  }
  return static_cast<double>(right) / static_cast<double>(images.size() - half);
}

TEST(Objects, ClassIsNotColourAColourMeanClassifierStaysNearChance) {
  std::vector<cv::Mat> images, control;
  std::vector<int> labels;
  for (std::uint64_t i = 0; i < 2000; ++i) {
    const int label = static_cast<int>(i % 10);
    labels.push_back(label);
    ObjectsScene scene = sample_objects_scene(11, i, label);
    images.push_back(render_objects_scene(scene, 32, 32));
    // The control: the same scenes with the background's colour set by the class (the corners
    // of the RGB cube, mid-grey, orange) and no lighting change.
    const std::array<cv::Scalar, 10> palette{{{0, 0, 0}, {255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 0},
                                              {255, 0, 255}, {0, 255, 255}, {255, 255, 255}, {128, 128, 128},
                                              {0, 128, 255}}};
    scene.background_a = scene.background_b = palette[label];
    scene.contrast = 1, scene.brightness = 0;
    control.push_back(render_objects_scene(scene, 32, 32));
  }
  const double accuracy = colour_mean_accuracy(images, labels);
  const double control_accuracy = colour_mean_accuracy(control, labels);
  EXPECT_LT(accuracy, 0.2) << "colour gives the class away";
  EXPECT_GT(control_accuracy, 0.6) << "the classifier cannot read even colour-coded classes";
}

}  // namespace
}  // namespace augflow::data
