// Test-time views: centre crop, ten-crop (torchvision order) and multi-scale ten-crop.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "augment/spec.hpp"
#include "augment/views.hpp"
#include "common/error.hpp"
#include "tests/fixtures.hpp"

namespace augflow::augment {
namespace {

using test::same_bytes;

Views views_of(const std::string& spec) { return parse_views(spec).views; }

std::string where(const ViewPlan& v) { return test::describe(v.crop.source) + (v.flip ? " flipped" : ""); }

TEST(Views, Counts) {
  EXPECT_EQ(views_of("center").count(), 1);
  EXPECT_EQ(views_of("tencrop").count(), 10);
  EXPECT_EQ(views_of("multiscale").count(), 50);  // 224, 256, 384, 480, 640
  EXPECT_EQ(views_of("multiscale(scales=[256,300])").count(), 20);
  EXPECT_EQ(views_of("multiscale(scales=300,size=256)").count(), 10);
  const cv::Mat image = test::smooth_image(160, 120);
  for (const std::string spec : {"center(128,112)", "tencrop(128,112)", "multiscale(scales=[112,128,150],size=112)"}) {
    const Views v = views_of(spec);
    const auto out = v.apply(image);
    ASSERT_EQ(static_cast<int>(out.size()), v.count()) << spec;
    ASSERT_EQ(static_cast<int>(v.plan({160, 120, 3}).size()), v.count()) << spec;
    for (const auto& m : out) {
      EXPECT_EQ(m.size(), cv::Size(112, 112)) << spec;
      EXPECT_EQ(m.type(), CV_8UC3) << spec;
    }
  }
}

TEST(Views, TenCropPositionsOnKnownImage) {
  // 400x300, short side to 256 (scale 0.8533): the resized image is 341x256, each 224 crop covers
  // 224 / 0.8533 = 262.5 source pixels.
  const Views v = views_of("tencrop(resize=256,size=224)");
  const ImageInfo in{400, 300, 3};
  const auto plan = v.plan(in);
  ASSERT_EQ(plan.size(), 10u);
  for (const auto& view : plan) {
    SCOPED_TRACE(where(view));
    EXPECT_EQ(view.crop.source & cv::Rect(0, 0, 400, 300), view.crop.source);
    EXPECT_NEAR(view.crop.source.width, 262.5, 0.5);
    EXPECT_EQ(view.crop.source.width, view.crop.source.height);
    EXPECT_EQ(view.crop.out, cv::Size(224, 224));
    EXPECT_EQ(view.scale, 256);
  }
  EXPECT_EQ(plan[0].crop.source.tl(), cv::Point(0, 0)) << "0: top-left";
  EXPECT_EQ(plan[1].crop.source.br().x, 400) << "1: top-right " << where(plan[1]);
  EXPECT_EQ(plan[1].crop.source.y, 0) << "1: top-right " << where(plan[1]);
  EXPECT_EQ(plan[2].crop.source.x, 0) << "2: bottom-left " << where(plan[2]);
  EXPECT_EQ(plan[2].crop.source.br().y, 300) << "2: bottom-left " << where(plan[2]);
  EXPECT_EQ(plan[3].crop.source.br(), cv::Point(400, 300)) << "3: bottom-right " << where(plan[3]);
  const cv::Rect& c = plan[4].crop.source;
  EXPECT_NEAR(c.x + c.width / 2.0, 200, 1.0) << "4: centre " << where(plan[4]);
  EXPECT_NEAR(c.y + c.height / 2.0, 150, 1.0) << "4: centre " << where(plan[4]);
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(plan[i].flip);
    EXPECT_TRUE(plan[i + 5].flip);
    EXPECT_EQ(plan[i + 5].crop, plan[i].crop) << "view " << i + 5 << " is view " << i << " mirrored";
  }
}

TEST(Views, CornerViewsTouchTheCornersForManySizes) {
  const Views v = views_of("tencrop(resize=256,size=224)");
  for (const auto& s : std::vector<cv::Size>{{400, 300}, {500, 375}, {333, 500}, {1000, 999}, {257, 256},
                                             {640, 480}, {3000, 2000}, {224, 224}, {10, 10}, {4000, 6},
                                             {6, 4000}, {1023, 767}, {301, 1999}}) {
    const auto plan = v.plan({s.width, s.height, 3});
    SCOPED_TRACE(std::to_string(s.width) + "x" + std::to_string(s.height) + ": " + where(plan[0]) + " " +
                 where(plan[1]) + " " + where(plan[2]) + " " + where(plan[3]));
    EXPECT_EQ(plan[0].crop.source.tl(), cv::Point(0, 0));
    EXPECT_EQ(plan[1].crop.source.br().x, s.width);
    EXPECT_EQ(plan[1].crop.source.y, 0);
    EXPECT_EQ(plan[2].crop.source.x, 0);
    EXPECT_EQ(plan[2].crop.source.br().y, s.height);
    EXPECT_EQ(plan[3].crop.source.br(), cv::Point(s.width, s.height));
    for (const auto& view : plan) EXPECT_EQ(view.crop.source & cv::Rect(0, 0, s.width, s.height), view.crop.source);
  }
}

TEST(Views, FlippedViewsMirrorTheFirstFive) {
  const Views v = views_of("tencrop(resize=256,size=224)");
  const cv::Mat image = test::noise_image(400, 300, 3, 5);
  const auto out = v.apply(image);
  ASSERT_EQ(out.size(), 10u);
  for (int i = 0; i < 5; ++i) {
    cv::Mat mirrored;
    cv::flip(out[i], mirrored, 1);
    EXPECT_TRUE(same_bytes(out[i + 5], mirrored)) << "view " << i + 5;
    EXPECT_FALSE(same_bytes(out[i + 5], out[i])) << "view " << i + 5 << " is not flipped";
  }
  // The four corners differ from each other (they come from different places).
  for (int i = 0; i < 4; ++i)
    for (int j = i + 1; j < 5; ++j) EXPECT_FALSE(same_bytes(out[i], out[j])) << i << " vs " << j;
}

TEST(Views, FlipIsTheCentreAndItsMirror) {
  const Views flip = views_of("flip(resize=40,size=32)");
  ASSERT_EQ(flip.count(), 2);
  const cv::Mat image = test::noise_image(48, 40, 3, 9);
  const auto out = flip.apply(image);
  ASSERT_EQ(out.size(), 2u);
  const auto centre = views_of("center(resize=40,size=32)").apply(image);
  EXPECT_TRUE(same_bytes(out[0], centre[0]));
  cv::Mat mirrored;
  cv::flip(centre[0], mirrored, 1);
  EXPECT_TRUE(same_bytes(out[1], mirrored));
  const auto plans = flip.plan({48, 40, 3});
  EXPECT_FALSE(plans[0].flip);
  EXPECT_TRUE(plans[1].flip);
}

TEST(Views, ViewsMatchResizeThenCrop) {
  // The reference is the textbook recipe: resize the whole image so the short side is 256,
  // then cut 224 x 224 at the corners and the centre. The views crop in source coordinates and
  // resize only the crop, so they differ by resampling only. Tolerance: mean abs difference < 2
  // levels on this smooth image.
  const cv::Mat image = test::smooth_image(400, 300);
  const Views v = views_of("tencrop(resize=256,size=224)");
  const auto out = v.apply(image);
  cv::Mat resized;
  cv::resize(image, resized, cv::Size(341, 256), 0, 0, cv::INTER_LINEAR);
  const int right = 341 - 224, bottom = 256 - 224;
  const cv::Rect crops[5] = {{0, 0, 224, 224}, {right, 0, 224, 224}, {0, bottom, 224, 224},
                             {right, bottom, 224, 224}, {59, 16, 224, 224}};
  for (int i = 0; i < 5; ++i) {
    const auto d = test::diff_stats(out[i], resized(crops[i]));
    EXPECT_LT(d.mean, 2.0) << "view " << i << ": mean " << d.mean << " max " << d.max;
  }
}

TEST(Views, CenterIsTheCentreView) {
  const cv::Mat image = test::noise_image(321, 250, 3, 6);
  const auto centre = views_of("center(resize=256,size=224)").apply(image);
  const auto ten = views_of("tencrop(resize=256,size=224)").apply(image);
  ASSERT_EQ(centre.size(), 1u);
  EXPECT_TRUE(same_bytes(centre[0], ten[4]));
}

TEST(Views, MultiscaleViewsAreSizeBySizeInScaleOrder) {
  const Views v = views_of("multiscale(scales=[224,256,384,480,640],size=224)");
  const cv::Mat image = test::smooth_image(500, 375, 1);
  const auto plan = v.plan({500, 375, 1});
  const auto out = v.apply(image);
  ASSERT_EQ(plan.size(), 50u);
  ASSERT_EQ(out.size(), 50u);
  const int scales[] = {224, 256, 384, 480, 640};
  for (int i = 0; i < 50; ++i) {
    SCOPED_TRACE("view " + std::to_string(i) + " " + where(plan[i]));
    EXPECT_EQ(plan[i].scale, scales[i / 10]);
    EXPECT_EQ(plan[i].flip, i % 10 >= 5);
    EXPECT_NEAR(plan[i].crop.source.width, 224.0 * 375 / scales[i / 10], 1.0);
    EXPECT_EQ(out[i].size(), cv::Size(224, 224));
    EXPECT_EQ(out[i].type(), CV_8UC1);
  }
  // At scale 224 = size the crop covers the whole short side.
  EXPECT_EQ(plan[0].crop.source.height, 375);
}

TEST(Views, SmallAndExtremeInputsAreResizedUp) {
  for (const std::string spec : {"center", "tencrop", "multiscale(scales=[224,300])"}) {
    const Views v = views_of(spec);
    for (const auto& s : std::vector<cv::Size>{{10, 10}, {1, 1}, {4000, 6}, {6, 4000}, {3, 250}}) {
      for (int channels : {1, 3}) {
        SCOPED_TRACE(spec + " on " + std::to_string(s.width) + "x" + std::to_string(s.height) + "x" +
                     std::to_string(channels));
        const cv::Mat image = test::noise_image(s.width, s.height, channels, 7);
        std::vector<cv::Mat> out;
        ASSERT_NO_THROW(out = v.apply(image));
        ASSERT_EQ(static_cast<int>(out.size()), v.count());
        for (const auto& m : out) {
          EXPECT_EQ(m.size(), cv::Size(224, 224));
          EXPECT_EQ(m.channels(), channels);
        }
        for (const auto& view : v.plan({s.width, s.height, channels})) {
          EXPECT_EQ(view.crop.source & cv::Rect(0, 0, s.width, s.height), view.crop.source) << where(view);
          EXPECT_FALSE(view.crop.source.empty());
        }
      }
    }
  }
}

TEST(Views, ApplyIsDeterministic) {
  const Views v = views_of("multiscale(scales=[256,300],size=224)");
  const cv::Mat image = test::noise_image(350, 280, 3, 8);
  const auto a = v.apply(image), b = v.apply(image.clone());
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_bytes(a[i], b[i])) << "view " << i;
}

TEST(Views, ScaleBelowSizeIsAnError) {
  auto args = [](const std::string& name, std::map<std::string, Value> values) { return Args(name, std::move(values)); };
  EXPECT_THROW(Views(args("center", {{"resize", Value::integer(200)}, {"size", Value::integer(224)}})), ConfigError);
  EXPECT_THROW(Views(args("tencrop", {{"resize", Value::integer(223)}, {"size", Value::integer(224)}})), ConfigError);
  EXPECT_THROW(Views(args("multiscale", {{"scales", Value::of_list({256, 200})}, {"size", Value::integer(224)}})),
               ConfigError);
  EXPECT_NO_THROW(Views(args("center", {{"resize", Value::integer(224)}, {"size", Value::integer(224)}})));
  try {
    (void)parse_views("tencrop(resize=200,size=224)");
    FAIL() << "no SpecError";
  } catch (const SpecError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("position"), std::string::npos) << message;
    EXPECT_NE(message.find("200"), std::string::npos) << message;
    EXPECT_EQ(e.token(), "tencrop");
  }
  EXPECT_THROW(views_of("center(resize=256,size=0)"), SpecError);
}

TEST(Views, RejectsUnsupportedImages) {
  const Views v = views_of("tencrop");
  EXPECT_THROW(v.apply(cv::Mat()), ShapeError);
  EXPECT_THROW(v.apply(cv::Mat(300, 300, CV_8UC4)), ShapeError);
  EXPECT_THROW(v.apply(cv::Mat(300, 300, CV_32FC3)), ShapeError);
}

}  // namespace
}  // namespace augflow::augment
