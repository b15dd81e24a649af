// Defaults that follow the data: the header survey and the rule that turns it into a model and
// an augmentation, and that augflow train applies it only to what the user did not give.
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "augment/spec.hpp"
#include "pipeline/dataset.hpp"
#include "pipeline/defaults.hpp"
#include "pipeline/trainer.hpp"
#include "tests/fixtures.hpp"

namespace augflow::pipeline {
namespace {

/// Two classes of `per_class` images each, sizes (width + i*step, height + i*step) for i < per_class.
void write_sized_folder(const test::TempDir& dir, int width, int height, int per_class, const std::string& ext,
                        int step = 1) {
  for (const char* name : {"a", "b"})
    for (int i = 0; i < per_class; ++i)
      dir.write(std::string("data/") + name + "/img" + std::to_string(i) + ext,
                test::encode(test::noise_image(width + i * step, height + i * step, 3, i), ext));
}

std::string canonical(const std::string& aug) { return augment::parse_pipeline_any(aug).print(); }

TEST(DataDefaults, SurveyReadsHeadersAndTakesMedians) {
  test::TempDir dir;
  write_sized_folder(dir, 40, 30, 5, ".jpg");  // widths 40..44, heights 30..34
  dir.write("data/a/broken.jpg", {0xFF, 0xD8, 0xFF});  // a JPEG start and nothing else
  const Dataset data = open_image_folder(dir.path() / "data");
  const ImageSurvey s = survey_images(data);
  EXPECT_EQ(s.probed, 10u);
  EXPECT_EQ(s.unreadable, 1u);
  EXPECT_EQ(s.median_width, 42);
  EXPECT_EQ(s.median_height, 32);
  EXPECT_EQ(s.median_short_side, 32);
}

TEST(DataDefaults, SurveyReadsAtMostTheFilesAskedForSpreadOverTheClasses) {
  test::TempDir dir;
  // Class a is small, class b large: a survey of the first files only would see class a alone.
  for (int i = 0; i < 6; ++i) {
    dir.write("data/a/img" + std::to_string(i) + ".png", test::encode(test::noise_image(20, 20, 3, i), ".png"));
    dir.write("data/b/img" + std::to_string(i) + ".png", test::encode(test::noise_image(90, 80, 3, i), ".png"));
  }
  const Dataset data = open_image_folder(dir.path() / "data");
  const ImageSurvey s = survey_images(data, 4);
  EXPECT_EQ(s.probed, 4u);
  EXPECT_EQ(s.median_short_side, 80);  // two of each class, the upper median
}

TEST(DataDefaults, AugmentationFollowsTheMedianShortSide) {
  EXPECT_EQ(default_aug_for_files(32), "center_crop(32,32) | pad_crop(4,32) | hflip | normalize(imagenet)");
  EXPECT_EQ(default_aug_for_files(30), "center_crop(32,32) | pad_crop(4,32) | hflip | normalize(imagenet)");
  EXPECT_EQ(default_aug_for_files(8), "center_crop(16,16) | pad_crop(2,16) | hflip | normalize(imagenet)");
  EXPECT_EQ(default_aug_for_files(64), "center_crop(64,64) | pad_crop(8,64) | hflip | normalize(imagenet)");
  EXPECT_EQ(default_aug_for_files(500),
            "hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)");
  // 128: crop 112 (7/8 of 128), short side in [128, 240].
  EXPECT_EQ(default_aug_for_files(128),
            "hflip | scale_crop(128,240,112) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)");
  EXPECT_EQ(default_aug_for_files(70),
            "hflip | scale_crop(74,138,64) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)");
}

TEST(DataDefaults, ModelFollowsTheImageSize) {
  test::TempDir small_dir, large_dir;
  write_sized_folder(small_dir, 32, 32, 3, ".png");
  write_sized_folder(large_dir, 300, 260, 3, ".jpg");
  const DataDefaults small = choose_data_defaults(open_image_folder(small_dir.path() / "data"));
  EXPECT_EQ(small.model, kSmallImageModel);
  EXPECT_NE(small.why.find("median image 33x33"), std::string::npos) << small.why;  // 32, 33, 34
  const DataDefaults large = choose_data_defaults(open_image_folder(large_dir.path() / "data"));
  EXPECT_EQ(large.model, kLargeImageModel);
  EXPECT_NE(large.aug.find("scale_crop(256,480,224)"), std::string::npos) << large.aug;
}

TEST(DataDefaults, AFolderOfUnreadableFilesIsAClearError) {
  test::TempDir dir;
  dir.write("data/a/x.jpg", {1, 2, 3});
  dir.write("data/b/y.png", {4, 5, 6});
  test::expect_throws_with([&] { choose_data_defaults(open_image_folder(dir.path() / "data")); },
                           "give --model and --aug yourself");
}

TEST(DataDefaults, TrainUsesThemOnlyForWhatWasNotGiven) {
  test::TempDir dir;
  write_sized_folder(dir, 24, 24, 6, ".png", 0);
  TrainConfig c;
  c.train = (dir.path() / "data").string();
  c.epochs = 1;
  c.batch = 4;
  c.threads = 1;
  c.out = (dir.path() / "auto").string();
  std::vector<std::string> lines;
  train(c, [&](const std::string& line) { lines.push_back(line); });
  const auto config = test::read_json(dir.path() / "auto" / "config.json");
  EXPECT_EQ(config.at("aug"), canonical("center_crop(24,24) | pad_crop(3,24) | hflip | normalize(imagenet)"));
  EXPECT_EQ(config.at("input"), nlohmann::json::array({3, 24, 24}));
  EXPECT_EQ(config.at("model").get<std::string>().rfind("conv32k3p1", 0), 0u) << config.at("model");
  bool explained = false;
  for (const auto& line : lines) explained |= line.find("median image 24x24") != std::string::npos;
  EXPECT_TRUE(explained);

  // A given augmentation is kept; the model is still chosen.
  c.aug = "center_crop(20,16) | normalize(none)";
  c.out = (dir.path() / "given").string();
  train(c, [](const std::string&) {});
  const auto given = test::read_json(dir.path() / "given" / "config.json");
  EXPECT_EQ(given.at("aug"), canonical("center_crop(20,16) | normalize(none)"));
  EXPECT_EQ(given.at("input"), nlohmann::json::array({3, 16, 16}));
}

}  // namespace
}  // namespace augflow::pipeline
