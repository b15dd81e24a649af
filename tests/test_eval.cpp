// augflow eval: view defaults from the training spec, view batches through the loader,
// probability averaging, ensembles and the errors for mismatched inputs.
#include <cmath>
#include <cstring>

#include <gtest/gtest.h>
#include <opencv2/imgcodecs.hpp>

#include "augment/spec.hpp"
#include "common/error.hpp"
#include "model/net.hpp"
#include "pipeline/evaluator.hpp"
#include "pipeline/loader.hpp"
#include "tests/fixtures.hpp"
#include "tests/model_fixtures.hpp"

namespace augflow::pipeline {
namespace {

using test::write_checkpoint;
using test::write_noise_folder;

model::Checkpoint checkpoint_with(const std::string& augmentation, int side) {
  model::Checkpoint ckpt;
  ckpt.input = {1, 3, side, side};
  ckpt.augmentation = augmentation;
  return ckpt;
}

TEST(EvalViews, DefaultsFollowTheTrainingCrop) {
  EvalConfig c;
  c.views = "center";
  auto views = member_views(checkpoint_with("hflip | scale_crop(256,480,224) | normalize(imagenet)", 224), c);
  EXPECT_EQ(views.spec, "center(resize=256,size=224) | normalize(preset=imagenet)");
  EXPECT_EQ(views.pad, 0);
  views = member_views(checkpoint_with("resized_crop(224) | normalize(imagenet)", 224), c);
  EXPECT_EQ(views.spec, "center(resize=256,size=224) | normalize(preset=imagenet)");
  c.views = "tencrop";
  views = member_views(checkpoint_with("pad_crop(2,28) | hflip | normalize(none)", 28), c);
  EXPECT_EQ(views.spec, "tencrop(resize=32,size=28) | normalize(preset=none)");
  EXPECT_EQ(views.pad, 2) << "pad_crop: the views are taken from the image padded as trained";
  c.views = "multiscale";
  views = member_views(checkpoint_with("pad_crop(4,32) | normalize(none)", 32), c);
  EXPECT_EQ(views.spec, "multiscale(scales=[40,45,50],size=32) | normalize(preset=none)");
  views = member_views(checkpoint_with("scale_crop(256,480,224) | normalize(imagenet)", 224), c);
  EXPECT_EQ(augment::parse_views(views.spec).views.count(), 50);
  c.resize = 300;  // an explicit resize wins and turns the padding off
  views = member_views(checkpoint_with("pad_crop(2,28) | normalize(none)", 28), c);
  EXPECT_EQ(views.pad, 0);
}

TEST(EvalViews, AutoPicksTheViewsTheTrainingMadeUseful) {
  EvalConfig c;
  ASSERT_EQ(c.views, kAutoViews) << "auto is the default";
  // Scale augmentation at 224: the lecture's ten crops.
  auto views = member_views(checkpoint_with("hflip | scale_crop(256,480,224) | normalize(imagenet)", 224), c);
  EXPECT_EQ(views.spec, "tencrop(resize=256,size=224) | normalize(preset=imagenet)");
  // Small images trained with flips: the centre and its mirror, from the padded image.
  views = member_views(checkpoint_with("pad_crop(4,32) | hflip | normalize(none)", 32), c);
  EXPECT_EQ(views.spec, "flip(resize=40,size=32) | normalize(preset=none)");
  EXPECT_EQ(views.pad, 4);
  // Scale augmentation at a small crop: its corners lose to the centre, so flip (or centre).
  views = member_views(checkpoint_with("hflip | scale_crop(73,137,64) | normalize(imagenet)", 64), c);
  EXPECT_EQ(views.spec, "flip(resize=73,size=64) | normalize(preset=imagenet)");
  // Never flipped in training: mirrors are images it never saw.
  views = member_views(checkpoint_with("pad_crop(2,28) | normalize(none)", 28), c);
  EXPECT_EQ(views.spec, "center(resize=32,size=28) | normalize(preset=none)");
}

TEST(EvalViews, CropThatDoesNotFitTheModelIsAnError) {
  EvalConfig c;
  c.crop = 256;
  test::expect_throws_with([&] { member_views(checkpoint_with("scale_crop(256,480,224) | normalize(imagenet)", 224), c); },
                           "takes 224x224 inputs");
  c.crop = 0;
  c.views = "tencrop(resize=64,size=48)";
  test::expect_throws_with([&] { member_views(checkpoint_with("normalize(none)", 32), c); }, "crop 48 pixels");
  c.views = "multiscale";
  c.scales = {20, 40};
  test::expect_throws_with([&] { member_views(checkpoint_with("normalize(none)", 32), c); }, "smaller than the crop");
}

TEST(EvalViews, LoaderBatchesHoldEveryViewOfEachImageInOrder) {
  test::TempDir dir;
  write_noise_folder(dir, 2, 3);
  Dataset data = open_dataset((dir.path() / "data").string());
  auto views = std::make_shared<const augment::ViewPipeline>(
      augment::parse_views("multiscale([24,30,36],24) | normalize(imagenet)"));
  LoaderOptions o;
  o.batch_size = 4;
  o.shuffle = false;
  o.views = views;
  Loader loader(data, std::make_shared<const augment::Pipeline>(augment::parse_pipeline("normalize(none)")), o);
  loader.start_epoch(0);
  std::size_t seen = 0;
  while (auto batch = loader.next()) {
    ASSERT_EQ(batch->views(), 30) << "multiscale: 10 crops at each of 3 scales";
    const std::size_t floats = batch->shape().floats();
    for (int i = 0; i < batch->size(); ++i) {
      const auto id = batch->sample_ids()[i];
      const cv::Mat image = cv::imread(data.paths[id], cv::IMREAD_COLOR);
      const auto crops = views->views.apply(image);
      ASSERT_EQ(crops.size(), 30u);
      std::vector<float> expected(floats);
      for (std::size_t v = 0; v < crops.size(); ++v) {
        views->normalize.to_chw(crops[v], expected.data());
        EXPECT_EQ(0, std::memcmp(expected.data(), batch->data() + (i * 30 + v) * floats, floats * sizeof(float)))
            << "image " << id << " view " << v;
      }
    }
    seen += batch->size();
  }
  EXPECT_EQ(seen, data.size());
}

TEST(EvalViews, AveragingProbabilitiesAndLogits) {
  // One image, two views with logits (0, ln 3) and (ln 3, 0): probabilities (1/4, 3/4) and
  // (3/4, 1/4) average to (1/2, 1/2); the logits average to (ln3/2, ln3/2), also (1/2, 1/2).
  // A second image with views (0, 0) and (0, ln 3): probabilities (1/2, 1/2), (1/4, 3/4) -> (3/8, 5/8);
  // mean logits (0, ln3/2) -> softmax (1/(1+sqrt3), sqrt3/(1+sqrt3)).
  model::Tensor logits({4, 2, 1, 1});
  const float l3 = std::log(3.0f);
  const float values[] = {0, l3, l3, 0, 0, 0, 0, l3};
  std::copy(values, values + 8, logits.data());
  std::vector<float> probs;
  average_views(logits, 2, 2, 2, false, probs);
  ASSERT_EQ(probs.size(), 4u);
  EXPECT_NEAR(probs[0], 0.5, 1e-6);
  EXPECT_NEAR(probs[1], 0.5, 1e-6);
  EXPECT_NEAR(probs[2], 3.0 / 8, 1e-6);
  EXPECT_NEAR(probs[3], 5.0 / 8, 1e-6);
  average_views(logits, 2, 2, 2, true, probs);
  EXPECT_NEAR(probs[2], 1 / (1 + std::sqrt(3.0)), 1e-6);
  EXPECT_NEAR(probs[3], std::sqrt(3.0) / (1 + std::sqrt(3.0)), 1e-6);
}

TEST(EvalEnsemble, OneModelAndIdenticalCopiesEqualTheModel) {
  test::TempDir dir;
  write_noise_folder(dir, 3, 4);
  const auto a = write_checkpoint(dir, "a.ckpt", "conv4k3p1-relu-gap-fc3", 24, 3, "scale_crop(28,40,24) | normalize(imagenet)");
  EvalConfig c;
  c.data = (dir.path() / "data").string();
  c.views = "tencrop";
  c.batch = 16;
  c.members = {a};
  const auto quiet = [](const std::string&) {};
  const EvalResult one = evaluate(c, quiet);
  EXPECT_EQ(one.images, 12u);
  EXPECT_EQ(one.views_per_image, 10);
  ASSERT_EQ(one.members.size(), 1u);
  EXPECT_EQ(one.members[0].metrics.nll, one.metrics.nll) << "an ensemble of one is the model";
  c.members = {a, a, a};
  const EvalResult three = evaluate(c, quiet);
  EXPECT_NEAR(three.metrics.nll, one.metrics.nll, 1e-6);
  EXPECT_EQ(three.metrics.top1, one.metrics.top1);
  EXPECT_EQ(three.confusion, one.confusion);
  c.batch = 1;  // fewer views than one image has: still one image per batch, same result
  c.members = {a};
  EXPECT_NEAR(evaluate(c, quiet).metrics.nll, one.metrics.nll, 1e-6);
}

TEST(EvalEnsemble, MembersWithDifferentViewsRunInLockstep) {
  test::TempDir dir;
  write_noise_folder(dir, 2, 5);
  const auto small = write_checkpoint(dir, "s.ckpt", "conv4k3p1-relu-gap-fc2", 16, 2, "scale_crop(20,30,16) | normalize(imagenet)");
  const auto large = write_checkpoint(dir, "l.ckpt", "conv4k3p1-relu-gap-fc2", 24, 2, "scale_crop(28,40,24) | normalize(imagenet)", 7);
  EvalConfig c;
  c.data = (dir.path() / "data").string();
  c.members = {small, large};
  const auto quiet = [](const std::string&) {};
  const EvalResult both = evaluate(c, quiet);
  ASSERT_EQ(both.members.size(), 2u);
  EXPECT_NE(both.members[0].views, both.members[1].views);
  c.members = {small};
  const double alone = evaluate(c, quiet).metrics.nll;
  EXPECT_NEAR(both.members[0].metrics.nll, alone, 1e-6) << "a member scores the same inside an ensemble";
}

TEST(EvalEnsemble, ClassMismatchIsAClearError) {
  test::TempDir dir;
  write_noise_folder(dir, 3, 2);
  const auto two = write_checkpoint(dir, "two.ckpt", "fc2", 16, 2, "scale_crop(20,30,16) | normalize(imagenet)");
  EvalConfig c;
  c.data = (dir.path() / "data").string();
  c.members = {two};
  test::expect_throws_with([&] { evaluate(c, [](const std::string&) {}); }, "differ from the 2 the model");
}

}  // namespace
}  // namespace augflow::pipeline
