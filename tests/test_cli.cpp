// The augflow command line: exit codes, messages and outputs a user or script relies on.
#include <cstdio>
#include <fstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "tests/fixtures.hpp"

namespace {

using augflow::test::run;

TEST(Cli, BadSpecExitsTwoAndNamesTheToken) {
  augflow::test::TempDir dir;
  const auto r = run("preview testcard --aug 'hflip | scale_cropp(256)' --out " + (dir.path() / "x.png").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("scale_cropp"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("position 9"), std::string::npos) << r.output;
}

TEST(Cli, UnknownOptionExitsTwo) {
  EXPECT_EQ(run("preview testcard --no-such-option").status, 2);
}

TEST(Cli, UndecodableImageExitsOneNamingFileAndReason) {
  augflow::test::TempDir dir;
  const auto gif = dir.write("anim.gif", {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0});
  const auto r = run("preview " + gif.string() + " --out " + (dir.path() / "x.png").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(gif.string()), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("GIF"), std::string::npos) << r.output;
}

TEST(Cli, PreviewWritesSheetAndSamples) {
  augflow::test::TempDir dir;
  const auto sheet = dir.path() / "sheet.png";
  const auto samples = dir.path() / "samples";
  const auto r = run("preview testcard --aug 'hflip | scale_crop(256,480,224)' --n 3 --seed 7 --out " +
                     sheet.string() + " --out-dir " + samples.string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_FALSE(cv::imread(sheet.string()).empty());
  for (int i = 0; i < 3; ++i) {
    const cv::Mat sample = cv::imread((samples / ("sample_00" + std::to_string(i) + ".png")).string());
    ASSERT_FALSE(sample.empty());
    EXPECT_EQ(sample.size(), cv::Size(224, 224));
  }
  // The printed parameters name every transform of each sample.
  EXPECT_NE(r.output.find("sample 2:  hflip: flip="), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("scale_crop: L="), std::string::npos) << r.output;
}

TEST(Cli, PreviewIsReproducibleFromTheSeed) {
  augflow::test::TempDir dir;
  const auto a = run("preview testcard --n 2 --seed 3 --out " + (dir.path() / "a.png").string());
  const auto b = run("preview testcard --n 2 --seed 3 --out " + (dir.path() / "b.png").string());
  const auto c = run("preview testcard --n 2 --seed 4 --out " + (dir.path() / "c.png").string());
  auto params = [](const std::string& out) { return out.substr(out.find("sample 0"), out.find("(tiles") - out.find("sample 0")); };
  EXPECT_EQ(params(a.output), params(b.output));
  EXPECT_NE(params(a.output), params(c.output));
}

TEST(Cli, PreviewViewsShowsTenCrops) {
  augflow::test::TempDir dir;
  const auto r = run("preview testcard --views tencrop --out " + (dir.path() / "v.png").string() + " --out-dir " +
                     (dir.path() / "v").string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("view 9:"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("view 10:"), std::string::npos) << r.output;
  EXPECT_FALSE(cv::imread((dir.path() / "v" / "sample_009.png").string()).empty());
}

TEST(Cli, BenchAugmentWritesTheContractKeys) {
  augflow::test::TempDir dir;
  for (int i = 0; i < 6; ++i) {
    std::vector<std::uint8_t> jpeg;
    cv::imencode(".jpg", augflow::test::smooth_image(320 + 10 * i, 240), jpeg);
    dir.write("imgs/img" + std::to_string(i) + ".jpg", jpeg);
  }
  dir.write("imgs/broken.jpg", {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'});
  const auto json_path = dir.path() / "bench.json";
  const auto r = run("bench augment --data " + (dir.path() / "imgs").string() +
                     " --aug 'hflip | scale_crop(256,300,224) | normalize(imagenet)' --threads 2 --passes 1 --per-transform --json " +
                     json_path.string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("broken.jpg"), std::string::npos) << "the bad file is reported: " << r.output;
  std::ifstream in(json_path);
  const auto report = nlohmann::json::parse(in);
  EXPECT_EQ(report.at("images"), 6);
  EXPECT_EQ(report.at("skipped_files"), 1);
  for (const char* key : {"decode_images_per_second", "augment_images_per_second", "decode_augment_images_per_second"})
    EXPECT_GT(report.at(key).get<double>(), 0.0) << key;
  EXPECT_TRUE(report.at("per_transform").contains("scale_crop"));
}

}  // namespace

namespace {

TEST(Cli, TrainWithABadModelSpecExitsTwoNamingTheToken) {
  augflow::test::TempDir dir;
  const auto r = run("train --train fashion-mnist --model conv32k3-bogus-fc10 --out " + (dir.path() / "run").string());
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("bogus"), std::string::npos) << r.output;
}

TEST(Cli, TrainWithoutOutIsAUsageError) {
  EXPECT_EQ(run("train --train fashion-mnist").status, 2);
}

}  // namespace

namespace {

TEST(Cli, BenchTrainWritesTheContractKeys) {
  augflow::test::TempDir dir;
  const auto json_path = dir.path() / "train.json";
  const auto r = run("bench train --model twolayer --batch 16 --steps 2 --repeats 1 --threads 2 --json " +
                     json_path.string());
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream in(json_path);
  const auto report = nlohmann::json::parse(in);
  for (const char* key : {"train_samples_per_second", "infer_samples_per_second", "gflops"})
    EXPECT_GT(report.at(key).get<double>(), 0.0) << key;
  EXPECT_EQ(report.at("model"), "fc50-relu-fc10");
}

TEST(Cli, BenchTrainReportsTheKernelsFractionOfPeak) {
  augflow::test::TempDir dir;
  const auto json_path = dir.path() / "train.json";
  const auto r = run("bench train --model conv4k3p1-relu-fc10 --batch 16 --steps 2 --repeats 1 --threads 2 --json " +
                     json_path.string());
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream in(json_path);
  const auto report = nlohmann::json::parse(in);
  // Any x86-64 core does at least 2 FLOP per cycle at 0.5 GHz; no kernel beats the FMA loop.
  EXPECT_GT(report.at("peak_gflops").get<double>(), 1.0);
  const double fraction = report.at("fraction_of_peak").get<double>();
  EXPECT_GT(fraction, 0.0);
  EXPECT_LE(fraction, 1.0);
  for (const char* kind : {"conv_forward", "conv_backward", "fc_forward", "fc_backward", "conv_fc"})
    EXPECT_GT(report.at("kernels").at(kind).at("gflops").get<double>(), 0.0) << kind;
  EXPECT_NE(r.output.find("of peak"), std::string::npos) << r.output;
}

}  // namespace
