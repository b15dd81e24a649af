// A parsed augmentation spec, ready to run on images.
//
//   Pipeline p = parse_pipeline("hflip | scale_crop(256,480,224) | normalize(imagenet)");
//   AugmentedSample s = p.run(file_bytes, {seed, epoch, index}, /*channels=*/3);
//   p.normalize().to_chw(s.image, batch_slot);
//
// Transform i of sample (seed, epoch, index) draws from Rng({seed, epoch, index}, i): results
// are bit-identical whatever thread runs them and in whatever order.
//
// API: public, part of augflow::augment; installed as <augflow/augment/pipeline.hpp>.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <opencv2/core.hpp>

#include "augflow/augment/decode.hpp"
#include "augflow/augment/normalize.hpp"
#include "augflow/augment/transform.hpp"
#include "augflow/augment/views.hpp"

namespace augflow::augment {

/// Every random choice made for one sample: replaying it gives the same bytes.
struct SamplePlan {
  ImageInfo input;
  std::vector<Params> params;  ///< one per transform, in pipeline order
  /// One line per transform: "hflip: flip=1", "scale_crop: L=301 source=...".
  std::vector<std::string> describe(const class Pipeline& pipeline) const;
};

/// A decoded image and what is left to do to it: the first half of Pipeline::run, so that a
/// flow graph can decode and augment in separate stages.
struct DecodedSample {
  cv::Mat image;            ///< as decoded: the whole image, or the region the leading crop keeps
  SamplePlan plan;          ///< every transform's parameters, as sampled
  /// The transforms still to apply, in order, with parameters in the decoded image's frame
  /// (the leading crop's rectangle mapped into the decoded region; leading flips moved after it).
  std::vector<std::pair<std::size_t, Params>> steps;
  cv::Rect decoded_region;
  int scale_denom = 1;
};

struct AugmentedSample {
  cv::Mat image;       ///< 8-bit HWC, the pipeline's output size
  SamplePlan plan;
  cv::Rect decoded_region;  ///< what was decoded from the file (the whole image or a crop of it)
  int scale_denom = 1;      ///< JPEG scaled-IDCT reduction used
};

class Pipeline {
 public:
  /// The identity pipeline (no transform, normalize "none").
  Pipeline() = default;
  Pipeline(std::vector<TransformPtr> transforms, Normalize normalize);
  Pipeline(Pipeline&&) = default;
  Pipeline& operator=(Pipeline&&) = default;

  const std::vector<TransformPtr>& transforms() const { return transforms_; }
  const Normalize& normalize() const { return normalize_; }

  /// Canonical text: every parameter named, reads back to an equal pipeline.
  std::string print() const;
  /// {"version": 1, "steps": [{"name": "hflip", "p": 0.5}, ...]}
  nlohmann::json to_json() const;

  /// Draws every transform's parameters for one sample.
  SamplePlan plan(const ImageInfo& in, SampleKey key) const;
  /// The reference path: applies a plan to an already decoded image, transform by transform.
  cv::Mat apply(const cv::Mat& image, const SamplePlan& plan) const;
  /// The fast path: probes the header, samples the plan, decodes only the region the leading
  /// crop keeps (at a reduced JPEG scale when that crop shrinks 2x or more), then applies.
  /// Equal to decode + apply up to resampling differences.
  AugmentedSample run(std::span<const std::uint8_t> bytes, SampleKey key, int channels,
                      std::int64_t max_pixels = kDefaultMaxPixels) const;
  /// run(), first half: probe, plan, decode only what the leading crop keeps.
  DecodedSample decode(std::span<const std::uint8_t> bytes, SampleKey key, int channels,
                       std::int64_t max_pixels = kDefaultMaxPixels) const;
  /// The reference path's first half for an image already in memory (IDX, cache): plans it and
  /// leaves every transform to apply. `image` is shared, not copied.
  DecodedSample prepare(const cv::Mat& image, SampleKey key) const;
  /// run(), second half: applies the remaining steps.
  cv::Mat augment(const DecodedSample& sample) const;
  /// Output size and channels for an input of `in` (every crop has a fixed output size).
  ImageInfo output_info(const ImageInfo& in) const;

 private:
  std::vector<TransformPtr> transforms_;
  Normalize normalize_;
};

/// A test-time view set plus its normalization.
struct ViewPipeline {
  Views views;
  Normalize normalize;
  std::string print() const;
};

}  // namespace augflow::augment
