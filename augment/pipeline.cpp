#include "augment/pipeline.hpp"

#include <cmath>

#include "augment/spec.hpp"
#include "common/error.hpp"

namespace augflow::augment {

Pipeline::Pipeline(std::vector<TransformPtr> transforms, Normalize normalize)
    : transforms_(std::move(transforms)), normalize_(std::move(normalize)) {}

SamplePlan Pipeline::plan(const ImageInfo& in, SampleKey key) const {
  if (in.width < 1 || in.height < 1) throw ShapeError("cannot augment an empty image");
  SamplePlan plan{in, {}};
  plan.params.reserve(transforms_.size());
  ImageInfo info = in;
  for (std::size_t i = 0; i < transforms_.size(); ++i) {
    Rng rng(key, i);  // one stream per transform position
    plan.params.push_back(transforms_[i]->sample(info, rng));
    info = transforms_[i]->output_info(info, plan.params.back());
  }
  return plan;
}

cv::Mat Pipeline::apply(const cv::Mat& image, const SamplePlan& plan) const {
  if (plan.params.size() != transforms_.size())
    throw ShapeError("sample plan has " + std::to_string(plan.params.size()) + " entries for " +
                     std::to_string(transforms_.size()) + " transforms");
  cv::Mat out = image;
  for (std::size_t i = 0; i < transforms_.size(); ++i) out = transforms_[i]->apply(out, plan.params[i]);
  return out;
}

ImageInfo Pipeline::output_info(const ImageInfo& in) const {
  const SamplePlan p = plan(in, {});
  ImageInfo info = in;
  for (std::size_t i = 0; i < transforms_.size(); ++i) info = transforms_[i]->output_info(info, p.params[i]);
  return info;
}

namespace {

/// The JPEG scaled-IDCT reduction that still leaves at least the output resolution.
int reduction_for(const cv::Rect& source, cv::Size out) {
  const double shrink = std::min(static_cast<double>(source.width) / out.width,
                                 static_cast<double>(source.height) / out.height);
  for (int d : {8, 4, 2})
    if (shrink >= d) return d;
  return 1;
}

}  // namespace

AugmentedSample Pipeline::run(std::span<const std::uint8_t> bytes, SampleKey key, int channels,
                              std::int64_t max_pixels) const {
  DecodedSample decoded = decode(bytes, key, channels, max_pixels);
  AugmentedSample result;
  result.image = augment(decoded);
  result.plan = std::move(decoded.plan);
  result.decoded_region = decoded.decoded_region;
  result.scale_denom = decoded.scale_denom;
  return result;
}

DecodedSample Pipeline::prepare(const cv::Mat& image, SampleKey key) const {
  DecodedSample result;
  result.image = image;
  result.plan = plan({image.cols, image.rows, image.channels()}, key);
  for (std::size_t i = 0; i < transforms_.size(); ++i) result.steps.emplace_back(i, result.plan.params[i]);
  result.decoded_region = cv::Rect(0, 0, image.cols, image.rows);
  return result;
}

cv::Mat Pipeline::augment(const DecodedSample& sample) const {
  cv::Mat image = sample.image;
  for (const auto& [index, params] : sample.steps) image = transforms_.at(index)->apply(image, params);
  return image;
}

DecodedSample Pipeline::decode(std::span<const std::uint8_t> bytes, SampleKey key, int channels,
                               std::int64_t max_pixels) const {
  const ImageHeader header = probe_image(bytes);
  DecodedSample result;
  result.plan = plan({header.width, header.height, channels}, key);
  const auto& params = result.plan.params;

  // Leading flips commute with a crop that follows them: crop the mirrored rectangle of the
  // unflipped image and flip the (small) result. That puts the crop first, so only its
  // region is decoded.
  std::size_t lead = 0;
  bool mirror_x = false, mirror_y = false;
  while (lead < params.size() && std::holds_alternative<FlipParams>(params[lead])) {
    if (std::get<FlipParams>(params[lead]).flip) (transforms_[lead]->name() == "hflip" ? mirror_x : mirror_y) ^= true;
    ++lead;
  }
  if (lead == params.size() || !std::holds_alternative<CropParams>(params[lead])) {
    DecodedImage decoded = decode_image(bytes, {channels, {}, 1, max_pixels});
    result.image = decoded.image;
    result.decoded_region = decoded.region;
    for (std::size_t i = 0; i < transforms_.size(); ++i) result.steps.emplace_back(i, params[i]);
    return result;
  }

  CropParams crop = std::get<CropParams>(params[lead]);
  if (mirror_x) crop.source.x = header.width - crop.source.x - crop.source.width;
  if (mirror_y) crop.source.y = header.height - crop.source.y - crop.source.height;
  const cv::Rect bounds(0, 0, header.width, header.height);
  const bool inside = (crop.source & bounds) == crop.source;
  // A crop that reaches outside the image is filled from the whole image (reflect, wrap), so
  // decode all of it.
  DecodeOptions options{channels, inside ? crop.source : cv::Rect(), 1, max_pixels};
  if (inside) options.scale_denom = reduction_for(crop.source, crop.out);
  DecodedImage decoded = decode_image(bytes, options);
  result.image = decoded.image;
  result.decoded_region = decoded.region;
  result.scale_denom = decoded.scale_denom;

  // The crop rectangle in the decoded image's pixels.
  const double d = decoded.scale_denom;
  const int x0 = static_cast<int>(std::lround((crop.source.x - decoded.region.x) / d));
  const int y0 = static_cast<int>(std::lround((crop.source.y - decoded.region.y) / d));
  const int x1 = static_cast<int>(std::lround((crop.source.x + crop.source.width - decoded.region.x) / d));
  const int y1 = static_cast<int>(std::lround((crop.source.y + crop.source.height - decoded.region.y) / d));
  CropParams local = crop;
  local.source = {x0, y0, std::max(1, x1 - x0), std::max(1, y1 - y0)};
  if (inside) local.source &= cv::Rect(0, 0, decoded.image.cols, decoded.image.rows);
  if (local.source.empty()) throw ShapeError("internal: crop region lost after decoding");

  result.steps.emplace_back(lead, local);
  for (std::size_t i = 0; i < lead; ++i) result.steps.emplace_back(i, params[i]);
  for (std::size_t i = lead + 1; i < transforms_.size(); ++i) result.steps.emplace_back(i, params[i]);
  return result;
}

std::vector<std::string> SamplePlan::describe(const Pipeline& pipeline) const {
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < params.size() && i < pipeline.transforms().size(); ++i)
    lines.push_back(pipeline.transforms()[i]->name() + ": " + to_string(params[i]));
  return lines;
}

}  // namespace augflow::augment
