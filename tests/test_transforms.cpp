// Training transforms: the generic contract (looping over the registry, so a new transform is
// covered without editing this file), then geometry, sampling statistics, colour and normalize.
#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "augment/registry.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "tests/fixtures.hpp"

namespace augflow::augment {
namespace {

using test::noise_image;
using test::same_bytes;

/// One transform parsed from a spec, kept alive with its pipeline.
struct One {
  explicit One(const std::string& spec) : pipeline(parse_pipeline(spec)) {
    if (pipeline.transforms().size() != 1) throw std::logic_error("expected one step: " + spec);
  }
  const Transform& operator*() const { return *pipeline.transforms()[0]; }
  const Transform* operator->() const { return pipeline.transforms()[0].get(); }
  Pipeline pipeline;
};

template <class P>
P sample_as(const Transform& t, const ImageInfo& in, SampleKey key, std::uint64_t stream = 0) {
  Rng rng(key, stream);
  const Params params = t.sample(in, rng);
  EXPECT_TRUE(std::holds_alternative<P>(params)) << t.name() << " returned another Params type";
  return std::get<P>(params);
}

ImageInfo info_of(const cv::Mat& m) { return {m.cols, m.rows, m.channels()}; }

// ---------------------------------------------------------------------------------------------
// Generic contract, for every train step of the registry (defaults) and some harder configs.

std::vector<std::string> generic_specs() {
  std::vector<std::string> specs;
  for (const auto& step : step_registry())
    if (step.kind == StepKind::train) specs.push_back(step.name);
  const std::vector<std::string> extras = {
      "hflip(p=1)",
      "vflip(p=1)",
      "scale_crop(min=224,max=300,size=100)",
      "resized_crop(size=64,area=0.5:1,ratio=0.5:2)",
      "pad_crop(pad=8,size=40,border=reflect)",
      "pad_crop(pad=2,size=20,border=replicate)",
      "pad_crop(pad=4,size=32,border=wrap)",
      "jitter(brightness=0.4,contrast=0.4,saturation=0.4,hue=0.1)",
      "lighting(std=0.5)",
      "affine(translate=0.1,rotate=30,scale=0.8:1.2,stretch=0.1,shear=10)",
      "affine(rotate=45,interpolation=nearest,border=reflect)",
      "affine(rotate=20,scale=0.5:2,interpolation=cubic,border=wrap)",
      "erase(p=1,value=random)",
      "erase(p=1,value=zero)",
      "erase(p=1,area=0.3:0.5,value=mean)",
  };
  specs.insert(specs.end(), extras.begin(), extras.end());
  return specs;
}

struct Shape {
  int width, height, channels;
};

// Ordinary, tiny, extreme aspect ratios, grey and colour.
const std::vector<Shape> kShapes = {{64, 48, 3}, {48, 64, 1}, {1, 1, 3}, {1, 1, 1},   {4000, 6, 3},
                                    {6, 4000, 1}, {37, 29, 3}, {2, 3, 1}, {300, 200, 1}};
const std::vector<SampleKey> kKeys = {{0, 0, 0}, {7, 1, 12345}, {2024, 3, 99}};

class TransformContract : public ::testing::TestWithParam<std::string> {};

std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = std::to_string(info.index) + "_";
  for (char c : info.param) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      name += c;
    } else if (name.back() != '_') {
      name += '_';
    }
  }
  while (name.back() == '_') name.pop_back();
  return name;
}

TEST_P(TransformContract, SameKeyGivesSameParamsAndBytes) {
  const One t(GetParam());
  for (const auto& shape : kShapes) {
    const cv::Mat image = noise_image(shape.width, shape.height, shape.channels, 3);
    const cv::Mat original = image.clone();
    for (const auto& key : kKeys) {
      SCOPED_TRACE(std::to_string(shape.width) + "x" + std::to_string(shape.height) + "x" +
                   std::to_string(shape.channels) + " key index " + std::to_string(key.index));
      Rng r1(key, 2), r2(key, 2);
      const Params p1 = t->sample(info_of(image), r1);
      const Params p2 = t->sample(info_of(image), r2);
      ASSERT_EQ(p1, p2) << to_string(p1) << " vs " << to_string(p2);
      EXPECT_EQ(r1.draws(), r2.draws());
      EXPECT_EQ(to_json(p1), to_json(p2));
      EXPECT_FALSE(to_string(p1).empty());

      cv::Mat out1, out2;
      ASSERT_NO_THROW(out1 = t->apply(image, p1)) << to_string(p1);
      // Replay: the saved params applied again (to a copy) give the same bytes.
      ASSERT_NO_THROW(out2 = t->apply(image.clone(), p2)) << to_string(p1);
      EXPECT_TRUE(same_bytes(out1, out2)) << to_string(p1);
      EXPECT_TRUE(same_bytes(image, original)) << "apply modified its input: " << to_string(p1);
    }
  }
}

TEST_P(TransformContract, OutputMatchesOutputInfo) {
  const One t(GetParam());
  for (const auto& shape : kShapes) {
    const cv::Mat image = noise_image(shape.width, shape.height, shape.channels, 4);
    for (const auto& key : kKeys) {
      Rng rng(key);
      const Params p = t->sample(info_of(image), rng);
      SCOPED_TRACE(std::to_string(shape.width) + "x" + std::to_string(shape.height) + "x" +
                   std::to_string(shape.channels) + " " + to_string(p));
      const ImageInfo expected = t->output_info(info_of(image), p);
      cv::Mat out;
      ASSERT_NO_THROW(out = t->apply(image, p));
      EXPECT_EQ(info_of(out), expected);
      EXPECT_EQ(out.type(), CV_8UC(shape.channels)) << "still 8-bit HWC with the input's channels";
    }
  }
}

TEST_P(TransformContract, PipelinePlanAndApplyAreDeterministic) {
  const Pipeline p = parse_pipeline(GetParam() + " | " + GetParam());  // twice: streams 0 and 1
  const cv::Mat image = noise_image(80, 60, 3, 5);
  for (const auto& key : kKeys) {
    const SamplePlan a = p.plan(info_of(image), key);
    const SamplePlan b = p.plan(info_of(image), key);
    ASSERT_EQ(a.params, b.params);
    EXPECT_EQ(a.describe(p), b.describe(p));
    EXPECT_TRUE(same_bytes(p.apply(image, a), p.apply(image, b)));
    EXPECT_EQ(info_of(p.apply(image, a)), p.output_info(info_of(image)));
  }
}

TEST_P(TransformContract, IgnoresPixelsOutsideAnRoi) {
  // apply is a function of the image it is given: a view into a bigger image must give the same
  // result as a copy of that view (OpenCV functions can read pixels outside an ROI).
  const One t(GetParam());
  for (const auto& shape : kShapes) {
    if (shape.width > 1000 || shape.height > 1000) continue;
    const cv::Mat parent = noise_image(shape.width + 40, shape.height + 40, shape.channels, 6);
    const cv::Mat view = parent(cv::Rect(20, 20, shape.width, shape.height));
    const cv::Mat copy = view.clone();
    for (const auto& key : kKeys) {
      Rng rng(key);
      const Params p = t->sample(info_of(copy), rng);
      SCOPED_TRACE(std::to_string(shape.width) + "x" + std::to_string(shape.height) + "x" +
                   std::to_string(shape.channels) + " " + to_string(p));
      EXPECT_TRUE(same_bytes(t->apply(view, p), t->apply(copy, p)));
    }
  }
}

TEST_P(TransformContract, RejectsUnsupportedImages) {
  const One t(GetParam());
  Rng rng({1, 2, 3});
  const Params p = t->sample({16, 16, 3}, rng);
  EXPECT_THROW(t->apply(cv::Mat(), p), ShapeError);
  EXPECT_THROW(t->apply(cv::Mat(16, 16, CV_8UC4, cv::Scalar::all(9)), p), ShapeError);
  EXPECT_THROW(t->apply(cv::Mat(16, 16, CV_8UC2, cv::Scalar::all(9)), p), ShapeError);
  EXPECT_THROW(t->apply(cv::Mat(16, 16, CV_16UC3, cv::Scalar::all(9)), p), ShapeError);
  EXPECT_THROW(t->apply(cv::Mat(16, 16, CV_32FC1, cv::Scalar::all(9)), p), ShapeError);
}

INSTANTIATE_TEST_SUITE_P(Registry, TransformContract, ::testing::ValuesIn(generic_specs()), test_name);

// ---------------------------------------------------------------------------------------------
// Flips

TEST(Flip, DoubleHflipIsIdentity) {
  const One t("hflip(p=1)");
  const cv::Mat image = noise_image(31, 17, 3);
  const auto p = sample_as<FlipParams>(*t, info_of(image), {1, 0, 0});
  ASSERT_TRUE(p.flip);
  const cv::Mat once = t->apply(image, p);
  EXPECT_FALSE(same_bytes(once, image));
  for (int x : {0, 5, 30})
    EXPECT_EQ(once.at<cv::Vec3b>(4, x), image.at<cv::Vec3b>(4, 30 - x)) << "mirrors left-right, x " << x;
  EXPECT_TRUE(same_bytes(t->apply(once, p), image));
}

TEST(Flip, DoubleVflipIsIdentity) {
  const One t("vflip(p=1)");
  const cv::Mat image = noise_image(17, 31, 1);
  const auto p = sample_as<FlipParams>(*t, info_of(image), {1, 0, 0});
  ASSERT_TRUE(p.flip);
  const cv::Mat once = t->apply(image, p);
  for (int y : {0, 7, 30})
    EXPECT_EQ(once.at<std::uint8_t>(y, 3), image.at<std::uint8_t>(30 - y, 3)) << "mirrors top-bottom, y " << y;
  EXPECT_TRUE(same_bytes(t->apply(once, p), image));
}

TEST(Flip, NoFlipKeepsTheBytes) {
  const One t("hflip(p=0)");
  const cv::Mat image = noise_image(9, 5, 3);
  for (std::uint64_t i = 0; i < 500; ++i) {
    const auto p = sample_as<FlipParams>(*t, info_of(image), {3, 0, i});
    ASSERT_FALSE(p.flip);
  }
  EXPECT_TRUE(same_bytes(t->apply(image, FlipParams{false}), image));
}

TEST(Flip, RateMatchesP) {
  const One t("hflip(p=0.3)");
  int flips = 0;
  constexpr int n = 10000;
  for (std::uint64_t i = 0; i < n; ++i) flips += sample_as<FlipParams>(*t, {100, 100, 3}, {5, 1, i}).flip;
  EXPECT_NEAR(flips / double(n), 0.3, 0.02);
}

// ---------------------------------------------------------------------------------------------
// Crops

const std::vector<cv::Size> kCropSizes = {{500, 375}, {375, 500}, {224, 224}, {4000, 6}, {6, 4000},
                                          {1, 1},     {257, 1000}, {37, 29},  {100, 2}};

TEST(ScaleCrop, SourceStaysInsideImage) {
  const One t("scale_crop(256,480,224)");
  for (const auto& size : kCropSizes) {
    const ImageInfo in{size.width, size.height, 3};
    const int short_side = std::min(size.width, size.height);
    for (std::uint64_t i = 0; i < 500; ++i) {
      const auto p = sample_as<CropParams>(*t, in, {1, 0, i});
      SCOPED_TRACE(std::to_string(size.width) + "x" + std::to_string(size.height) + " " + test::describe(p.source));
      ASSERT_EQ(p.source & cv::Rect(0, 0, size.width, size.height), p.source);
      ASSERT_FALSE(p.source.empty());
      ASSERT_EQ(p.out, cv::Size(224, 224));
      ASSERT_GE(p.scale_length, 256);
      ASSERT_LE(p.scale_length, 480);
      // The square covers size/L of the short side (when that fits in the image).
      const double side = 224.0 * short_side / p.scale_length;
      if (side <= short_side) {
        EXPECT_NEAR(p.source.width, side, 1.0);
        EXPECT_NEAR(p.source.height, side, 1.0);
      }
    }
  }
}

TEST(ScaleCrop, PositionsReachEveryEdge) {
  // Over many samples the crop touches the left, right, top and bottom of the image: no source
  // row or column is out of reach. (640x480 at L=256: the resized image is 341.33 px wide, so
  // mapping resized positions back with independently rounded offsets can stop one pixel short.)
  const One t("scale_crop(256,256,224)");
  for (const ImageInfo in : {ImageInfo{512, 300, 3}, ImageInfo{640, 480, 3}, ImageInfo{480, 640, 3}}) {
    int left = 0, right = 0, top = 0, bottom = 0;
    for (std::uint64_t i = 0; i < 3000; ++i) {
      const auto p = sample_as<CropParams>(*t, in, {2, 0, i});
      left += p.source.x == 0;
      right += p.source.br().x == in.width;
      top += p.source.y == 0;
      bottom += p.source.br().y == in.height;
    }
    SCOPED_TRACE(std::to_string(in.width) + "x" + std::to_string(in.height));
    EXPECT_GT(left, 0);
    EXPECT_GT(right, 0);
    EXPECT_GT(top, 0);
    EXPECT_GT(bottom, 0);
  }
}

TEST(ScaleCrop, LengthIsUniformOverIntegers) {
  const One t("scale_crop(min=256,max=260,size=224)");
  std::map<int, int> counts;
  constexpr int n = 10000;
  for (std::uint64_t i = 0; i < n; ++i) ++counts[sample_as<CropParams>(*t, {500, 375, 3}, {4, 2, i}).scale_length];
  ASSERT_EQ(counts.size(), 5u) << "L takes exactly the values 256..260";
  for (const auto& [length, count] : counts) {
    EXPECT_GE(length, 256);
    EXPECT_LE(length, 260);
    EXPECT_NEAR(count, n / 5, 150) << "L = " << length;  // binomial sd is 40
  }
}

TEST(ResizedCrop, SourceStaysInsideImage) {
  const One t("resized_crop");
  for (const auto& size : kCropSizes) {
    const ImageInfo in{size.width, size.height, 3};
    for (std::uint64_t i = 0; i < 500; ++i) {
      const auto p = sample_as<CropParams>(*t, in, {1, 0, i});
      SCOPED_TRACE(std::to_string(size.width) + "x" + std::to_string(size.height) + " " + test::describe(p.source));
      ASSERT_EQ(p.source & cv::Rect(0, 0, size.width, size.height), p.source);
      ASSERT_FALSE(p.source.empty());
      ASSERT_EQ(p.out, cv::Size(224, 224));
    }
  }
}

TEST(ResizedCrop, AreaAndAspectWithinRanges) {
  const One t("resized_crop(size=224,area=0.08:1,ratio=0.75:1.3333333333333333)");
  const ImageInfo in{1000, 800, 3};
  const double area = 1000.0 * 800.0;
  double smallest = 1, largest = 0;
  for (std::uint64_t i = 0; i < 5000; ++i) {
    const auto p = sample_as<CropParams>(*t, in, {6, 0, i});
    const cv::Rect& r = p.source;
    SCOPED_TRACE(test::describe(r));
    ASSERT_EQ(r & cv::Rect(0, 0, in.width, in.height), r);
    const double fraction = r.area() / area;
    const double aspect = static_cast<double>(r.width) / r.height;
    // Tolerances: w and h are rounded to whole pixels (at least ~250 px here).
    EXPECT_GE(fraction, 0.08 * 0.99);
    EXPECT_LE(fraction, 1.0);
    EXPECT_GE(aspect, 0.75 * 0.99);
    EXPECT_LE(aspect, 4.0 / 3.0 * 1.01);
    smallest = std::min(smallest, fraction);
    largest = std::max(largest, fraction);
  }
  EXPECT_LT(smallest, 0.1);
  EXPECT_GT(largest, 0.9);
}

TEST(ResizedCrop, FallbackIsCentredWithClampedRatio) {
  // A 1000x10 strip: no crop of >= 8% area with ratio <= 4/3 fits, so every sample falls back
  // to the centre crop cut to ratio 4/3: 13x10 (torchvision's rule).
  const One t("resized_crop");
  for (std::uint64_t i = 0; i < 50; ++i) {
    const auto p = sample_as<CropParams>(*t, {1000, 10, 3}, {1, 0, i});
    EXPECT_EQ(p.source, cv::Rect((1000 - 13) / 2, 0, 13, 10));
  }
  const auto tall = sample_as<CropParams>(*t, {10, 1000, 3}, {1, 0, 0});
  EXPECT_EQ(tall.source, cv::Rect(0, (1000 - 13) / 2, 10, 13));
}

TEST(PadCrop, SourceStaysInsidePaddedBounds) {
  for (const std::string spec : {"pad_crop(pad=4,size=32)", "pad_crop(pad=0,size=16)", "pad_crop(pad=10,size=24)"}) {
    const One t(spec);
    const int pad = t->args().integer("pad"), size = t->args().integer("size");
    for (const auto& s : std::vector<cv::Size>{{32, 32}, {50, 40}, {1, 1}, {20, 3}, {4000, 6}, {33, 100}}) {
      const int extra_x = std::max(0, size - (s.width + 2 * pad));
      const int extra_y = std::max(0, size - (s.height + 2 * pad));
      const cv::Rect padded(-pad - extra_x / 2, -pad - extra_y / 2, s.width + 2 * pad + extra_x,
                            s.height + 2 * pad + extra_y);
      int at_left = 0, at_right = 0;
      for (std::uint64_t i = 0; i < 400; ++i) {
        const auto p = sample_as<CropParams>(*t, {s.width, s.height, 3}, {8, 0, i});
        SCOPED_TRACE(spec + " on " + std::to_string(s.width) + "x" + std::to_string(s.height) + " " +
                     test::describe(p.source));
        ASSERT_EQ(p.source.size(), cv::Size(size, size));
        ASSERT_EQ(p.source & padded, p.source);
        ASSERT_FALSE((p.source & cv::Rect(0, 0, s.width, s.height)).empty()) << "the crop must see the image";
        at_left += p.source.x == padded.x;
        at_right += p.source.br().x == padded.br().x;
      }
      if (padded.width - size < 50) {  // few enough positions for 400 samples to reach both ends
        EXPECT_GT(at_left, 0) << spec << " " << s.width << "x" << s.height;
        EXPECT_GT(at_right, 0) << spec << " " << s.width << "x" << s.height;
      }
    }
  }
}

/// What pad_crop promises: pad the whole image on every side with the border mode, then crop.
cv::Mat pad_then_crop(const cv::Mat& image, const cv::Rect& source, int border) {
  const int left = std::max(0, -source.x), top = std::max(0, -source.y);
  const int right = std::max(0, source.br().x - image.cols), bottom = std::max(0, source.br().y - image.rows);
  cv::Mat padded;
  cv::copyMakeBorder(image, padded, top, bottom, left, right, border | cv::BORDER_ISOLATED, cv::Scalar::all(0));
  return padded(cv::Rect(source.x + left, source.y + top, source.width, source.height)).clone();
}

void expect_pad_crop_matches_reference(const std::string& spec, int border, cv::Size size) {
  const One t(spec);
  const cv::Mat image = noise_image(size.width, size.height, 3, 11);
  int mismatches = 0, failures = 0;
  std::string first;
  for (std::uint64_t i = 0; i < 200; ++i) {
    const auto p = sample_as<CropParams>(*t, info_of(image), {9, 0, i});
    cv::Mat out;
    try {
      out = t->apply(image, p);
    } catch (const std::exception& e) {
      if (!failures++) first += " first exception: " + std::string(e.what()) + " for " + test::describe(p.source);
      continue;
    }
    const auto same = same_bytes(out, pad_then_crop(image, p.source, border));
    if (!same && !mismatches++) first += " first mismatch at " + test::describe(p.source) + ": " + same.message();
  }
  EXPECT_EQ(failures, 0) << spec << " on " << size.width << "x" << size.height << first;
  EXPECT_EQ(mismatches, 0) << spec << " on " << size.width << "x" << size.height << " (of 200 samples)" << first;
}

TEST(PadCrop, BorderModesMatchPaddingTheWholeImage) {
  // Default pad and size on a 40x36 image: each crop sticks out by at most 4 pixels.
  expect_pad_crop_matches_reference("pad_crop(pad=4,size=32,border=constant)", cv::BORDER_CONSTANT, {40, 36});
  expect_pad_crop_matches_reference("pad_crop(pad=4,size=32,border=replicate)", cv::BORDER_REPLICATE, {40, 36});
  expect_pad_crop_matches_reference("pad_crop(pad=4,size=32,border=reflect)", cv::BORDER_REFLECT_101, {40, 36});
  expect_pad_crop_matches_reference("pad_crop(pad=4,size=32,border=wrap)", cv::BORDER_WRAP, {40, 36});
}

TEST(PadCrop, LargePaddingMatchesPaddingTheWholeImage) {
  // pad >= size/2: the part of the crop inside the image can be narrower than the padding; with
  // pad >= size the crop can lie entirely in the padding. The constructor accepts both.
  for (const auto& [border_word, border] : std::vector<std::pair<std::string, int>>{
           {"constant", cv::BORDER_CONSTANT}, {"replicate", cv::BORDER_REPLICATE},
           {"reflect", cv::BORDER_REFLECT_101}, {"wrap", cv::BORDER_WRAP}}) {
    expect_pad_crop_matches_reference("pad_crop(pad=12,size=16,border=" + border_word + ")", border, {40, 36});
    expect_pad_crop_matches_reference("pad_crop(pad=40,size=32,border=" + border_word + ")", border, {40, 36});
  }
}

// ---------------------------------------------------------------------------------------------
// Affine

TEST(Affine, DefaultsAreIdentity) {
  for (const std::string spec : {"affine", "affine(interpolation=cubic,border=reflect)",
                                 "affine(rotate=0:0,scale=1:1,interpolation=nearest)"}) {
    const One t(spec);
    for (const auto& shape : kShapes) {
      const cv::Mat image = noise_image(shape.width, shape.height, shape.channels, 2);
      const auto p = sample_as<AffineParams>(*t, info_of(image), {1, 1, 1});
      EXPECT_EQ(p, AffineParams{}) << spec;
      EXPECT_TRUE(same_bytes(t->apply(image, p), image)) << spec;
    }
  }
}

/// 21x21 black image (centre (10,10)) with the given marked pixels.
cv::Mat marked(const std::vector<std::pair<cv::Point, int>>& marks, int size = 21) {
  cv::Mat m(size, size, CV_8UC1, cv::Scalar(0));
  for (const auto& [p, v] : marks) m.at<std::uint8_t>(p) = static_cast<std::uint8_t>(v);
  return m;
}

TEST(Affine, RotateNinetyIsCounterClockwise) {
  const One t("affine(rotate=90:90,interpolation=nearest)");
  const cv::Mat image = marked({{{15, 10}, 255}, {{10, 13}, 200}});  // right of and below the centre
  const auto p = sample_as<AffineParams>(*t, info_of(image), {0, 0, 0});
  ASSERT_EQ(p.rotate, 90.0);
  const cv::Mat out = t->apply(image, p);
  // Counter-clockwise on screen: right -> up, below -> right.
  EXPECT_TRUE(same_bytes(out, marked({{{10, 5}, 255}, {{13, 10}, 200}})))
      << "the right-hand pixel went to " << [&] {
           cv::Point where;
           cv::minMaxLoc(out, nullptr, nullptr, nullptr, &where);
           return "(" + std::to_string(where.x) + "," + std::to_string(where.y) + ")";
         }();
}

TEST(Affine, RotateMinusNinetyIsClockwise) {
  const One t("affine(rotate=-90:-90,interpolation=nearest)");
  const cv::Mat image = marked({{{15, 10}, 255}});
  const cv::Mat out = t->apply(image, sample_as<AffineParams>(*t, info_of(image), {0, 0, 0}));
  EXPECT_TRUE(same_bytes(out, marked({{{10, 15}, 255}})));
}

TEST(Affine, TranslationMovesByExpectedOffset) {
  // translate is a fraction of the size: 0.1 of 50x40 is (5, 4) pixels.
  const One t("affine(translate=0.1:0.1,interpolation=nearest)");
  const cv::Mat image = noise_image(50, 40, 3, 8);
  const auto p = sample_as<AffineParams>(*t, info_of(image), {0, 0, 0});
  ASSERT_DOUBLE_EQ(p.translate_x, 5.0);
  ASSERT_DOUBLE_EQ(p.translate_y, 4.0);
  const cv::Mat out = t->apply(image, p);
  cv::Mat expected(image.size(), image.type(), cv::Scalar::all(0));
  image(cv::Rect(0, 0, 45, 36)).copyTo(expected(cv::Rect(5, 4, 45, 36)));
  EXPECT_TRUE(same_bytes(out, expected));

  const One back("affine(translate=-0.1:-0.1,interpolation=nearest)");
  const auto q = sample_as<AffineParams>(*back, info_of(image), {0, 0, 0});
  cv::Mat left(image.size(), image.type(), cv::Scalar::all(0));
  image(cv::Rect(5, 4, 45, 36)).copyTo(left(cv::Rect(0, 0, 45, 36)));
  EXPECT_TRUE(same_bytes(back->apply(image, q), left));
}

TEST(Affine, ScaleAndShearAboutTheCentre) {
  const One zoom("affine(scale=2:2,interpolation=nearest)");
  const cv::Mat dot = marked({{{13, 10}, 255}});  // 3 right of the centre
  const cv::Mat zoomed = zoom->apply(dot, sample_as<AffineParams>(*zoom, info_of(dot), {0, 0, 0}));
  EXPECT_EQ(zoomed.at<std::uint8_t>(10, 16), 255) << "3 px right of centre goes to 6 px right at 2x";
  EXPECT_EQ(zoomed.at<std::uint8_t>(10, 13), 0);

  const One shear("affine(shear=45:45,interpolation=nearest)");
  const cv::Mat image = marked({{{10, 14}, 255}, {{12, 10}, 100}});
  const cv::Mat out = shear->apply(image, sample_as<AffineParams>(*shear, info_of(image), {0, 0, 0}));
  // Shear along x: x' = x + tan(45 deg) * y about the centre; the centre row does not move.
  EXPECT_TRUE(same_bytes(out, marked({{{14, 14}, 255}, {{12, 10}, 100}})));
}

// ---------------------------------------------------------------------------------------------
// Erase

TEST(Erase, RectInsideImageAndRateMatchesP) {
  const One t("erase(p=0.5)");
  const ImageInfo in{200, 150, 3};
  constexpr int n = 10000;
  int erased = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto p = sample_as<EraseParams>(*t, in, {3, 0, i});
    if (!p.erase) continue;
    ++erased;
    ASSERT_FALSE(p.rect.empty());
    ASSERT_EQ(p.rect & cv::Rect(0, 0, in.width, in.height), p.rect) << test::describe(p.rect);
    const double fraction = p.rect.area() / double(in.width * in.height);
    EXPECT_GE(fraction, 0.02 * 0.8) << test::describe(p.rect);  // rounding of ~25 px sides
    EXPECT_LE(fraction, 0.33 * 1.1) << test::describe(p.rect);
  }
  EXPECT_NEAR(erased / double(n), 0.5, 0.02);
}

TEST(Erase, FillsOnlyTheRect) {
  const cv::Mat image = noise_image(60, 40, 3, 12);
  const EraseParams p{true, cv::Rect(10, 5, 20, 15), 777};
  const cv::Mat outside_mask = [&] {
    cv::Mat m(image.size(), CV_8UC1, cv::Scalar(255));
    m(p.rect).setTo(0);
    return m;
  }();
  for (const auto& [value, fill] : std::vector<std::pair<std::string, cv::Scalar>>{
           {"zero", cv::Scalar(0, 0, 0)}, {"mean", cv::Scalar(104, 116, 124)}, {"random", cv::Scalar()}}) {
    SCOPED_TRACE(value);
    const One t("erase(p=1,value=" + value + ")");
    const cv::Mat out = t->apply(image, p);
    cv::Mat a, b;
    image.copyTo(a, outside_mask);
    out.copyTo(b, outside_mask);
    EXPECT_TRUE(same_bytes(a, b)) << "pixels outside the rectangle changed";
    if (value != "random") {
      EXPECT_TRUE(same_bytes(out(p.rect), cv::Mat(p.rect.size(), CV_8UC3, fill)));
    } else {
      EXPECT_GT(test::diff_stats(out(p.rect), image(p.rect)).mean, 30) << "noise replaces the pixels";
      EXPECT_TRUE(same_bytes(t->apply(image, p), out)) << "noise is a function of noise_seed";
      EraseParams other = p;
      other.noise_seed = 778;
      EXPECT_FALSE(same_bytes(t->apply(image, other), out));
    }
  }
  // Params for a bigger image are refused, not written out of bounds.
  const One t("erase(p=1)");
  EXPECT_THROW(t->apply(image, EraseParams{true, cv::Rect(50, 30, 20, 20), 0}), ShapeError);
}

// ---------------------------------------------------------------------------------------------
// Colour

/// 16x16 image holding every value 0..255 in each channel (in different places per channel).
cv::Mat all_values_image(int channels) {
  cv::Mat m(16, 16, CV_8UC(channels));
  for (int i = 0; i < 256; ++i)
    for (int c = 0; c < channels; ++c)
      m.ptr<std::uint8_t>(i / 16)[(i % 16) * channels + c] = static_cast<std::uint8_t>((i * (2 * c + 1) + 37 * c) % 256);
  return m;
}

TEST(Jitter, DefaultsAreIdentity) {
  const One t("jitter");
  for (int channels : {1, 3}) {
    const cv::Mat image = noise_image(33, 21, channels);
    const auto p = sample_as<JitterParams>(*t, info_of(image), {1, 2, 3});
    EXPECT_TRUE(same_bytes(t->apply(image, p), image));
  }
}

TEST(Jitter, BrightnessTwoDoublesValues) {
  const One t("jitter(brightness=2:2)");
  for (int channels : {1, 3}) {
    const cv::Mat image = all_values_image(channels);
    const auto p = sample_as<JitterParams>(*t, info_of(image), {0, 0, 0});
    ASSERT_EQ(p.brightness, 2.0);
    const cv::Mat out = t->apply(image, p);
    cv::Mat expected(image.size(), image.type());
    for (int i = 0; i < 256 * channels; ++i)
      expected.data[i] = static_cast<std::uint8_t>(std::min(255, 2 * image.data[i]));
    EXPECT_TRUE(same_bytes(out, expected)) << channels << " channels";
  }
}

TEST(Jitter, ContrastZeroGivesFlatMeanGrey) {
  const One t("jitter(contrast=0:0)");
  for (int channels : {1, 3}) {
    const cv::Mat image = noise_image(40, 30, channels, 21);
    double sum = 0;
    for (int y = 0; y < image.rows; ++y)
      for (int x = 0; x < image.cols; ++x) {
        if (channels == 1) {
          sum += image.at<std::uint8_t>(y, x);
        } else {
          const cv::Vec3b v = image.at<cv::Vec3b>(y, x);
          sum += 0.114 * v[0] + 0.587 * v[1] + 0.299 * v[2];  // BT.601 grey of BGR
        }
      }
    const double mean = sum / image.total();
    const auto p = sample_as<JitterParams>(*t, info_of(image), {0, 0, 0});
    ASSERT_EQ(p.contrast, 0.0);
    const cv::Mat out = t->apply(image, p);
    double lo, hi;
    cv::minMaxLoc(out.reshape(1), &lo, &hi);
    EXPECT_EQ(lo, hi) << "flat image";
    EXPECT_NEAR(lo, mean, 0.5 + 1e-9) << channels << " channels";
  }
}

TEST(Jitter, SaturationZeroGivesGrey) {
  const One t("jitter(saturation=0:0)");
  const cv::Mat image = noise_image(40, 30, 3, 22);
  const auto p = sample_as<JitterParams>(*t, info_of(image), {0, 0, 0});
  ASSERT_EQ(p.saturation, 0.0);
  const cv::Mat out = t->apply(image, p);
  for (int y = 0; y < out.rows; ++y)
    for (int x = 0; x < out.cols; ++x) {
      const cv::Vec3b v = out.at<cv::Vec3b>(y, x);
      const cv::Vec3b in = image.at<cv::Vec3b>(y, x);
      ASSERT_LE(std::abs(v[0] - v[1]), 1) << x << "," << y;
      ASSERT_LE(std::abs(v[1] - v[2]), 1) << x << "," << y;
      ASSERT_NEAR(v[1], 0.114 * in[0] + 0.587 * in[1] + 0.299 * in[2], 1.0) << x << "," << y;
    }
  // Grey images have no saturation to change.
  const cv::Mat grey = noise_image(10, 10, 1);
  EXPECT_TRUE(same_bytes(t->apply(grey, p), grey));
}

TEST(Jitter, HueShiftTurnsRedTowardsGreen) {
  const One t("jitter(hue=0.33333:0.33333)");
  const cv::Mat red(4, 4, CV_8UC3, cv::Scalar(0, 0, 255));
  const cv::Mat out = t->apply(red, sample_as<JitterParams>(*t, info_of(red), {0, 0, 0}));
  const cv::Vec3b v = out.at<cv::Vec3b>(2, 2);
  EXPECT_LE(v[0], 10);   // B
  EXPECT_GE(v[1], 245);  // G
  EXPECT_LE(v[2], 10);   // R
}

TEST(Jitter, FactorsStayInRangesAndDrawsAreFixed) {
  const One t("jitter(brightness=0.4,contrast=0.3:1.2,saturation=0.5,hue=0.2)");
  constexpr int n = 10000;
  double sum_b = 0, sum_c = 0;
  std::uint64_t draws = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    Rng rng({13, 0, i});
    const auto p = std::get<JitterParams>(t->sample({64, 64, 3}, rng));
    ASSERT_GE(p.brightness, 0.6);
    ASSERT_LT(p.brightness, 1.4);
    ASSERT_GE(p.contrast, 0.3);
    ASSERT_LT(p.contrast, 1.2);
    ASSERT_GE(p.saturation, 0.5);
    ASSERT_LT(p.saturation, 1.5);
    ASSERT_GE(p.hue, -0.2);
    ASSERT_LT(p.hue, 0.2);
    sum_b += p.brightness;
    sum_c += p.contrast;
    if (i == 0) draws = rng.draws();
    ASSERT_EQ(rng.draws(), draws) << "the number of draws must not depend on the values drawn";
  }
  EXPECT_NEAR(sum_b / n, 1.0, 0.01);  // sd of the mean: 0.0023
  EXPECT_NEAR(sum_c / n, 0.75, 0.01);
}

TEST(Jitter, OrderIsAUniformPermutation) {
  const One t("jitter(brightness=0.4)");
  std::map<std::array<std::uint8_t, 4>, int> counts;
  constexpr int n = 4800;
  for (std::uint64_t i = 0; i < n; ++i) {
    const auto p = sample_as<JitterParams>(*t, {8, 8, 3}, {14, 0, i});
    auto sorted = p.order;
    std::sort(sorted.begin(), sorted.end());
    ASSERT_EQ(sorted, (std::array<std::uint8_t, 4>{0, 1, 2, 3})) << "order is a permutation of 0..3";
    ++counts[p.order];
  }
  EXPECT_EQ(counts.size(), 24u) << "every order occurs";
  for (const auto& [order, count] : counts) EXPECT_NEAR(count, n / 24, 60) << "sd is 14";
}

TEST(Jitter, OrderIsApplied) {
  // A two-level grey image: left half 200, right half 100. Brightness 2 and contrast 0.5 in
  // either order give different results, worked out by hand below.
  cv::Mat two(8, 8, CV_8UC3, cv::Scalar(100, 100, 100));
  two(cv::Rect(0, 0, 4, 8)).setTo(cv::Scalar(200, 200, 200));
  JitterParams a;
  a.brightness = 2.0;
  a.contrast = 0.5;
  a.order = {0, 1, 2, 3};
  JitterParams b = a;
  b.order = {1, 0, 2, 3};
  const One t("jitter(brightness=0.5,contrast=0.5)");
  const cv::Mat out_a = t->apply(two, a), out_b = t->apply(two, b);
  // a, brightness first: 255 (400 saturated) and 200; mean 227.5; contrast 0.5: 241.25, 213.75.
  EXPECT_EQ(out_a.at<cv::Vec3b>(0, 0)[1], 241);
  EXPECT_EQ(out_a.at<cv::Vec3b>(0, 7)[1], 214);
  // b, contrast first around the mean 150: 175 and 125; then doubled: 255 (350) and 250.
  EXPECT_EQ(out_b.at<cv::Vec3b>(0, 0)[1], 255);
  EXPECT_EQ(out_b.at<cv::Vec3b>(0, 7)[1], 250);
}

TEST(Lighting, StdZeroIsIdentity) {
  const One t("lighting(std=0)");
  for (const auto& shape : kShapes) {
    const cv::Mat image = noise_image(shape.width, shape.height, shape.channels, 30);
    for (const auto& key : kKeys) {
      const auto p = sample_as<LightingParams>(*t, info_of(image), key);
      EXPECT_TRUE(same_bytes(t->apply(image, p), image));
    }
  }
}

TEST(Lighting, AddsThePrincipalComponent) {
  // alpha = (1, 0, 0): adds eigval[0] * eigvec[:, 0] * 255 to (R, G, B) (fb.resnet.torch).
  const One t("lighting");
  const cv::Mat image(3, 3, CV_8UC3, cv::Scalar(128, 128, 128));
  const cv::Mat out = t->apply(image, LightingParams{{1.0, 0.0, 0.0}});
  const double r = 128 - 0.5675 * 0.2175 * 255, g = 128 - 0.5808 * 0.2175 * 255, b = 128 - 0.5836 * 0.2175 * 255;
  const cv::Vec3b v = out.at<cv::Vec3b>(1, 1);
  EXPECT_EQ(v[0], std::lround(b));
  EXPECT_EQ(v[1], std::lround(g));
  EXPECT_EQ(v[2], std::lround(r));
}

// ---------------------------------------------------------------------------------------------
// Normalize

TEST(Normalize, ImagenetWritesRgbPlanes) {
  const Normalize norm = parse_pipeline("normalize(imagenet)").normalize();
  cv::Mat image(2, 3, CV_8UC3);
  for (int i = 0; i < 6; ++i)
    image.at<cv::Vec3b>(i / 3, i % 3) = cv::Vec3b(static_cast<std::uint8_t>(10 + i), static_cast<std::uint8_t>(100 + 20 * i),
                                                  static_cast<std::uint8_t>(250 - 30 * i));
  std::vector<float> chw(3 * 6, -1000.f);
  norm.to_chw(image, chw.data());
  const double mean[3] = {0.485, 0.456, 0.406}, stdev[3] = {0.229, 0.224, 0.225};  // R, G, B
  for (int i = 0; i < 6; ++i) {
    const cv::Vec3b bgr = image.at<cv::Vec3b>(i / 3, i % 3);
    const int rgb[3] = {bgr[2], bgr[1], bgr[0]};
    for (int c = 0; c < 3; ++c)
      EXPECT_NEAR(chw[c * 6 + i], (rgb[c] / 255.0 - mean[c]) / stdev[c], 1e-5) << "plane " << c << " pixel " << i;
  }
}

TEST(Normalize, GreyImageWritesOnePlane) {
  const Normalize norm = parse_pipeline("normalize(imagenet)").normalize();
  const cv::Mat image = noise_image(5, 4, 1);
  std::vector<float> chw(3 * 20, 12345.f);
  norm.to_chw(image, chw.data());
  const double m = (0.485 + 0.456 + 0.406) / 3, s = (0.229 + 0.224 + 0.225) / 3;
  for (int i = 0; i < 20; ++i) EXPECT_NEAR(chw[i], (image.data[i] / 255.0 - m) / s, 1e-5);
  for (int i = 20; i < 60; ++i) ASSERT_EQ(chw[i], 12345.f) << "wrote past the single plane at " << i;
}

// Grey images take 16 pixels per step where the CPU allows (a continuous image as one row):
// every value, in continuous images and in row views of a larger one, with tails of 1..15
// pixels, must be exactly what a pixel-by-pixel loop gives, and nothing is written past the end.
TEST(Normalize, GreyValuesExactForEveryLayout) {
  const Normalize norm = parse_pipeline("normalize(mean=[0.3],std=[0.7])").normalize();
  const cv::Mat big = noise_image(61, 37, 1);
  for (const auto& [w, h] : std::vector<std::pair<int, int>>{{28, 28}, {16, 1}, {17, 3}, {1, 5}, {31, 2}, {61, 37}}) {
    for (bool view : {false, true}) {
      SCOPED_TRACE(std::to_string(w) + "x" + std::to_string(h) + (view ? " view" : ""));
      const cv::Mat image = view ? big(cv::Rect(0, 0, w, h)) : big(cv::Rect(0, 0, w, h)).clone();
      ASSERT_EQ(image.isContinuous(), !view || w == big.cols || h == 1);
      std::vector<float> chw(static_cast<std::size_t>(w * h) + 16, -7.f);
      norm.to_chw(image, chw.data());
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
          ASSERT_EQ(chw[static_cast<std::size_t>(y * w + x)],
                    static_cast<float>((image.at<std::uint8_t>(y, x) / 255.0 - 0.3) / 0.7))
              << "pixel " << x << "," << y;
      for (std::size_t i = static_cast<std::size_t>(w * h); i < chw.size(); ++i) ASSERT_EQ(chw[i], -7.f) << i;
    }
  }
}

TEST(Normalize, NoneDividesBy255) {
  const cv::Mat image = all_values_image(3);
  for (const Normalize& norm : {Normalize(), parse_pipeline("normalize(none)").normalize()}) {
    std::vector<float> chw(3 * 256);
    norm.to_chw(image, chw.data());
    for (int i = 0; i < 256; ++i) {
      const std::uint8_t* px = image.data + 3 * i;
      EXPECT_FLOAT_EQ(chw[i], px[2] / 255.0f);
      EXPECT_FLOAT_EQ(chw[256 + i], px[1] / 255.0f);
      EXPECT_FLOAT_EQ(chw[512 + i], px[0] / 255.0f);
    }
  }
}

TEST(Normalize, CustomMeanAndStd) {
  const Normalize norm = parse_pipeline("normalize(mean=[0.5],std=[0.25])").normalize();
  EXPECT_EQ(norm.args().word("preset"), "custom");
  const cv::Mat image(1, 1, CV_8UC3, cv::Scalar(0, 51, 255));
  float chw[3];
  norm.to_chw(image, chw);
  EXPECT_NEAR(chw[0], (1.0 - 0.5) / 0.25, 1e-6);
  EXPECT_NEAR(chw[1], (0.2 - 0.5) / 0.25, 1e-6);
  EXPECT_NEAR(chw[2], (0.0 - 0.5) / 0.25, 1e-6);
  EXPECT_THROW(parse_pipeline("normalize(mean=[0.5,0.5],std=[0.2,0.2])"), SpecError);
  EXPECT_THROW(parse_pipeline("normalize(mean=[0.5],std=[0])"), SpecError);
  EXPECT_THROW(parse_pipeline("normalize(preset=none,mean=[0.5],std=[0.5])"), SpecError);
}

TEST(Normalize, RejectsUnsupportedImages) {
  const Normalize norm;
  std::vector<float> chw(4 * 16 * 16);
  EXPECT_THROW(norm.to_chw(cv::Mat(), chw.data()), ShapeError);
  EXPECT_THROW(norm.to_chw(cv::Mat(16, 16, CV_32FC3), chw.data()), ShapeError);
  EXPECT_THROW(norm.to_chw(cv::Mat(16, 16, CV_8UC4), chw.data()), ShapeError);
}

}  // namespace
}  // namespace augflow::augment
