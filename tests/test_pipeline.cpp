// Pipeline: planning, the fast path run() (region and scaled decode) against the reference path
// (decode everything, then apply the same plan), and determinism across threads.
#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/partitioner.h>
#include <oneapi/tbb/task_arena.h>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "augment/decode.hpp"
#include "augment/pipeline.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "tests/fixtures.hpp"

namespace augflow::augment {
namespace {

using test::same_bytes;

/// A generated image, its file bytes, and the reference decode by OpenCV (independent of
/// augflow's decoder).
struct Encoded {
  std::vector<std::uint8_t> bytes;
  cv::Mat decoded[2];  // [0] grey, [1] colour
  ImageInfo info(int channels) const { return {decoded[1].cols, decoded[1].rows, channels}; }
  const cv::Mat& reference(int channels) const { return decoded[channels == 3 ? 1 : 0]; }
};

const Encoded& encoded(cv::Size size, const std::string& ext = ".jpg") {
  static std::map<std::tuple<int, int, std::string>, Encoded> cache;
  auto& e = cache[{size.width, size.height, ext}];
  if (e.bytes.empty()) {
    e.bytes = test::encode(test::smooth_image(size.width, size.height), ext);
    e.decoded[0] = cv::imdecode(e.bytes, cv::IMREAD_GRAYSCALE);
    e.decoded[1] = cv::imdecode(e.bytes, cv::IMREAD_COLOR);
  }
  return e;
}

const std::vector<SampleKey> kKeys = {{1, 0, 0}, {1, 0, 1}, {1, 0, 2}, {7, 3, 5}, {99, 1, 123}, {5, 5, 5}};

struct RunCase {
  std::string spec;
  int channels = 3;
};

const std::vector<RunCase> kRunCases = {
    {"scale_crop(256,480,224)"},
    {"hflip(p=1) | scale_crop(256,480,224)"},  // the crop rectangle is mirrored before decoding
    {"vflip(p=1) | hflip(p=1) | resized_crop(size=160)"},
    {"hflip | vflip | resized_crop(size=128,area=0.3:1) | jitter(brightness=0.3,contrast=0.3,saturation=0.3)"},
    {"hflip(p=1) | pad_crop(pad=8,size=200,border=constant)"},
    {"affine(rotate=10,shear=5) | scale_crop(256,300,224)"},  // not a crop first: full decode
    {"hflip | scale_crop(256,480,224)", 1},
    {"hflip(p=1) | resized_crop(size=96,area=0.05:0.2)", 1},
};

/// Mean absolute difference allowed between run() and decode-whole + apply, per 8-bit value, on
/// smooth_image (JPEG quality 95). The two paths differ by resampling only: JPEG's scaled IDCT
/// instead of area averaging, a crop rounded to the reduced grid, bilinear instead of area, and
/// (grey) libjpeg's luma instead of OpenCV's. Measured: at most 0.7 mean, 7 max. A crop taken
/// from the wrong place (e.g. a missed mirror) gives tens.
constexpr double kMeanTolerance = 1.5;

void compare_run_with_reference(const std::string& ext) {
  for (const cv::Size size : {cv::Size(500, 375), cv::Size(1200, 900), cv::Size(37, 29)}) {
    const Encoded& image = encoded(size, ext);
    for (const auto& c : kRunCases) {
      const Pipeline p = parse_pipeline(c.spec);
      int max_denom = 1;
      for (const auto& key : kKeys) {
        SCOPED_TRACE(c.spec + " on " + std::to_string(size.width) + "x" + std::to_string(size.height) + ext +
                     " channels " + std::to_string(c.channels) + " key index " + std::to_string(key.index));
        AugmentedSample fast;
        ASSERT_NO_THROW(fast = p.run(image.bytes, key, c.channels));
        const SamplePlan plan = p.plan(image.info(c.channels), key);
        ASSERT_EQ(fast.plan.input, plan.input);
        ASSERT_EQ(fast.plan.params, plan.params) << "run() must sample the same plan";
        const cv::Mat reference = p.apply(image.reference(c.channels), plan);
        ASSERT_EQ(fast.image.size(), reference.size());
        ASSERT_EQ(fast.image.type(), reference.type());
        EXPECT_EQ(ImageInfo(fast.image.cols, fast.image.rows, fast.image.channels()), p.output_info(plan.input));
        const auto d = test::diff_stats(fast.image, reference);
        EXPECT_LT(d.mean, kMeanTolerance) << "mean abs diff " << d.mean << ", max " << d.max << ", decoded region "
                                          << test::describe(fast.decoded_region) << " at 1/" << fast.scale_denom
                                          << "; plan: " << ::testing::PrintToString(plan.describe(p));
        max_denom = std::max(max_denom, fast.scale_denom);
        EXPECT_EQ(fast.decoded_region & cv::Rect(0, 0, size.width, size.height), fast.decoded_region);
      }
      // The big image with a shrinking crop does use the scaled IDCT (the path is exercised).
      if (size.width == 1200 && c.spec.find("scale_crop(256,480") != std::string::npos) {
        EXPECT_GT(max_denom, 1) << c.spec;
      }
    }
  }
}

TEST(Pipeline, RunMatchesReferenceOnJpeg) { compare_run_with_reference(".jpg"); }

TEST(Pipeline, RunMatchesReferenceOnPng) { compare_run_with_reference(".png"); }

TEST(Pipeline, RunDecodesOnlyTheCropRegion) {
  const Encoded& image = encoded({1200, 900});
  for (const std::string spec : {"scale_crop(256,480,224)", "hflip(p=1) | vflip(p=1) | resized_crop(area=0.1:0.3)"}) {
    const Pipeline p = parse_pipeline(spec);
    for (const auto& key : kKeys) {
      const AugmentedSample s = p.run(image.bytes, key, 3);
      cv::Rect source = std::get<CropParams>(s.plan.params.back()).source;
      // The rectangle of the unflipped file the crop came from.
      if (spec.find("hflip") != std::string::npos) {
        source.x = 1200 - source.x - source.width;
        source.y = 900 - source.y - source.height;
      }
      SCOPED_TRACE(spec + ": source " + test::describe(source) + " decoded " + test::describe(s.decoded_region));
      EXPECT_EQ(s.decoded_region & source, source) << "the decoded region holds the crop";
      EXPECT_LT(s.decoded_region.area(), 1200 * 900) << "but not the whole image";
    }
  }
  // With a transform before the crop that is not a flip, everything is decoded.
  const Pipeline full = parse_pipeline("affine(rotate=5) | scale_crop");
  const AugmentedSample s = full.run(image.bytes, {1, 0, 0}, 3);
  EXPECT_EQ(s.decoded_region, cv::Rect(0, 0, 1200, 900));
  EXPECT_EQ(s.scale_denom, 1);
}

TEST(Pipeline, UnscaledRunOnPngIsByteExact) {
  // PNG is lossless and, at scale 1, run() crops the same pixels apply() crops: no resampling
  // differs, so the bytes must agree exactly.
  const Encoded& image = encoded({500, 375}, ".png");
  for (const std::string spec : {"hflip(p=1) | scale_crop(min=500,max=600,size=224)", "hflip(p=1) | resized_crop(area=0.05:0.1,size=224)",
                                 "vflip(p=1) | pad_crop(pad=8,size=100)", "hflip(p=1) | pad_crop(pad=30,size=100,border=reflect)",
                                 "hflip(p=1) | vflip(p=1) | pad_crop(pad=30,size=100,border=wrap)",
                                 "jitter(0.4,0.4,0.4,0.1) | hflip"}) {
    const Pipeline p = parse_pipeline(spec);
    for (const auto& key : kKeys) {
      const AugmentedSample s = p.run(image.bytes, key, 3);
      ASSERT_EQ(s.scale_denom, 1) << spec;
      EXPECT_TRUE(same_bytes(s.image, p.apply(image.reference(3), s.plan))) << spec << " key " << key.index;
    }
  }
}

TEST(Pipeline, IdentityPipelineReturnsTheDecodedImage) {
  const Pipeline identity;
  EXPECT_EQ(identity.print(), "normalize(preset=none)");
  const Encoded& png = encoded({37, 29}, ".png");
  const AugmentedSample s = identity.run(png.bytes, {}, 3);
  EXPECT_TRUE(s.plan.params.empty());
  EXPECT_TRUE(same_bytes(s.image, png.reference(3)));
  EXPECT_EQ(identity.output_info({37, 29, 3}), ImageInfo(37, 29, 3));
}

TEST(Pipeline, PlanUsesOneStreamPerPosition) {
  const Pipeline p = parse_pipeline("hflip | hflip | scale_crop | scale_crop(min=224,max=224)");
  const ImageInfo in{500, 375, 3};
  int flips_differ = 0;
  for (std::uint64_t i = 0; i < 200; ++i) {
    const SampleKey key{3, 1, i};
    const SamplePlan plan = p.plan(in, key);
    ASSERT_EQ(plan.params.size(), 4u);
    // Transform i draws from Rng(key, i) on the output of the transforms before it.
    ImageInfo info = in;
    for (std::size_t t = 0; t < 4; ++t) {
      Rng rng(key, t);
      EXPECT_EQ(plan.params[t], p.transforms()[t]->sample(info, rng)) << "transform " << t;
      info = p.transforms()[t]->output_info(info, plan.params[t]);
    }
    flips_differ += std::get<FlipParams>(plan.params[0]) != std::get<FlipParams>(plan.params[1]);
  }
  EXPECT_GT(flips_differ, 60) << "the two hflips are independent (expected about 100 of 200)";
  EXPECT_EQ(p.output_info(in), ImageInfo(224, 224, 3));
}

TEST(Pipeline, DifferentKeysGiveDifferentPlans) {
  const Pipeline p = parse_pipeline("scale_crop | jitter(0.4,0.4,0.4)");
  const ImageInfo in{500, 375, 3};
  const SamplePlan base = p.plan(in, {1, 1, 1});
  for (const SampleKey key : {SampleKey{2, 1, 1}, SampleKey{1, 2, 1}, SampleKey{1, 1, 2}})
    EXPECT_NE(p.plan(in, key).params, base.params) << key.seed << "," << key.epoch << "," << key.index;
}

TEST(Pipeline, DescribeAndErrors) {
  const Pipeline p = parse_pipeline("hflip(p=1) | scale_crop");
  const SamplePlan plan = p.plan({500, 375, 3}, {1, 2, 3});
  const auto lines = plan.describe(p);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], "hflip: flip=1");
  EXPECT_EQ(lines[1].rfind("scale_crop: L=", 0), 0u) << lines[1];

  const cv::Mat image = test::noise_image(500, 375, 3);
  SamplePlan short_plan = plan;
  short_plan.params.pop_back();
  EXPECT_THROW(p.apply(image, short_plan), ShapeError);
  EXPECT_THROW(p.plan({0, 10, 3}, {}), ShapeError);

  const std::vector<std::uint8_t> garbage = {'n', 'o', 't', ' ', 'a', 'n', ' ', 'i', 'm', 'a', 'g', 'e'};
  EXPECT_THROW(p.run(garbage, {}, 3), DataError);
  std::vector<std::uint8_t> truncated = encoded({500, 375}).bytes;
  truncated.resize(truncated.size() / 2);
  EXPECT_THROW(p.run(truncated, {}, 3), DataError);
  EXPECT_THROW(p.run(encoded({500, 375}).bytes, {}, 3, /*max_pixels=*/1000), DataError);
}

TEST(Pipeline, RunFromFileEqualsRunFromMemory) {
  const test::TempDir dir;
  const Encoded& image = encoded({500, 375});
  const auto path = dir.write("images/a.jpg", image.bytes);
  const std::vector<std::uint8_t> bytes = read_file(path);
  EXPECT_EQ(bytes, image.bytes);
  const Pipeline p = parse_pipeline("hflip | scale_crop");
  EXPECT_TRUE(same_bytes(p.run(bytes, {4, 4, 4}, 3).image, p.run(image.bytes, {4, 4, 4}, 3).image));
  EXPECT_THROW(read_file(dir.path() / "missing.jpg"), IoError);
}

TEST(Pipeline, DeterministicAcrossThreadsAndOrder) {
  const Pipeline p = parse_pipeline(
      "hflip | scale_crop(256,320,224) | jitter(0.4,0.4,0.4,0.1) | lighting | affine(rotate=10,translate=0.05) | "
      "erase(value=random) | normalize(imagenet)");
  const std::vector<const Encoded*> images = {&encoded({500, 375}), &encoded({375, 500}), &encoded({1200, 900}),
                                              &encoded({37, 29})};
  constexpr int n = 64;
  constexpr std::size_t floats = 3 * 224 * 224;
  auto run_one = [&](int i, std::vector<cv::Mat>& out, std::vector<std::vector<float>>& chw) {
    const AugmentedSample s = p.run(images[i % images.size()]->bytes, {2024, 7, static_cast<std::uint64_t>(i)}, 3);
    out[i] = s.image;
    chw[i].resize(floats);
    p.normalize().to_chw(s.image, chw[i].data());
  };
  std::vector<cv::Mat> serial(n);
  std::vector<std::vector<float>> serial_chw(n);
  for (int i = 0; i < n; ++i) run_one(i, serial, serial_chw);

  for (int threads : {1, 2}) {
    for (bool reversed : {false, true}) {
      SCOPED_TRACE(std::to_string(threads) + " thread(s), " + (reversed ? "reversed" : "forward") + " order");
      std::vector<cv::Mat> out(n);
      std::vector<std::vector<float>> chw(n);
      tbb::task_arena arena(threads);
      arena.execute([&] {
        tbb::parallel_for(
            tbb::blocked_range<int>(0, n, 1),
            [&](const tbb::blocked_range<int>& r) {
              for (int j = r.begin(); j != r.end(); ++j) run_one(reversed ? n - 1 - j : j, out, chw);
            },
            tbb::simple_partitioner());
      });
      for (int i = 0; i < n; ++i) {
        EXPECT_TRUE(same_bytes(out[i], serial[i])) << "sample " << i;
        EXPECT_EQ(std::memcmp(chw[i].data(), serial_chw[i].data(), floats * sizeof(float)), 0) << "sample " << i;
      }
    }
  }
}

}  // namespace
}  // namespace augflow::augment
