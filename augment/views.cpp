#include "augment/views.hpp"

#include <algorithm>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "augment/registry.hpp"
#include "common/error.hpp"

namespace augflow::augment {

Views::Views(const Args& args) : args_(args), size_(args.integer("size")) {
  if (args.name() == "multiscale") {
    for (double s : args.list("scales")) scales_.push_back(static_cast<int>(std::lround(s)));
    ten_ = true;
  } else {
    scales_ = {args.integer("resize")};
    ten_ = args.name() == "tencrop";
    mirror_ = args.name() == "flip";
  }
  if (size_ < 1 || size_ > 16384)
    throw ConfigError(args.name() + ": size must be in [1, 16384], got " + std::to_string(size_));
  if (scales_.empty()) throw ConfigError(args.name() + ": give at least one scale");
  for (int s : scales_)
    if (s < size_)
      throw ConfigError(args.name() + ": scale " + std::to_string(s) + " is smaller than the crop size " +
                        std::to_string(size_) + "; every scale must be >= size");
}

int Views::count() const { return static_cast<int>(scales_.size()) * (ten_ ? 10 : mirror_ ? 2 : 1); }

std::vector<ViewPlan> Views::plan(const ImageInfo& in) const {
  std::vector<ViewPlan> views;
  views.reserve(count());
  for (int length : scales_) {
    const ShortSideCrop geometry(in, length, size_);
    const int right = geometry.right, bottom = geometry.bottom;
    auto at = [&](int x, int y) { return geometry.source(x, y); };
    // torchvision's centre crop rounds the offset: int(round((W - size) / 2)).
    const CropParams centre = at(static_cast<int>(std::lround(right / 2.0)),
                                 static_cast<int>(std::lround(bottom / 2.0)));
    if (!ten_) {
      views.push_back({centre, false, length});
      if (mirror_) views.push_back({centre, true, length});
      continue;
    }
    const CropParams five[] = {at(0, 0), at(right, 0), at(0, bottom), at(right, bottom), centre};
    for (bool flip : {false, true})
      for (const auto& crop : five) views.push_back({crop, flip, length});
  }
  return views;
}

std::vector<cv::Mat> Views::apply(const cv::Mat& image) const {
  check_image(image, args_.name());
  std::vector<cv::Mat> out;
  const auto plans = plan({image.cols, image.rows, image.channels()});
  out.reserve(plans.size());
  for (std::size_t i = 0; i < plans.size(); ++i) {
    if (plans[i].flip) {
      // The flipped view mirrors its unflipped twin, already resized: flip it instead of resampling.
      cv::Mat mirrored;
      cv::flip(out[i - unmirrored()], mirrored, 1);
      out.push_back(mirrored);
    } else {
      out.push_back(crop_resize(image, plans[i].crop, cv::BORDER_REPLICATE));
    }
  }
  return out;
}

void add_view_steps(std::vector<StepInfo>& steps) {
  const ParamSpec resize{"resize", ValueKind::integer, Value::integer(256), "short side is resized to this first"};
  const ParamSpec size{"size", ValueKind::integer, Value::integer(224), "side of each square crop"};
  steps.push_back({"center", StepKind::view, "test-time view: resize the shorter side, take the centre crop",
                   {resize, size}, nullptr});
  steps.push_back({"flip", StepKind::view,
                   "test-time views: the centre crop and its mirror image: 2 views (for models trained with hflip)",
                   {resize, size}, nullptr});
  steps.push_back({"tencrop", StepKind::view,
                   "test-time views: 4 corners + centre (top-left, top-right, bottom-left, bottom-right, centre), then the same five mirrored: 10 views",
                   {resize, size}, nullptr});
  steps.push_back({"multiscale", StepKind::view,
                   "test-time views: ten crops at each scale (ResNet: 224,256,384,480,640 -> 50 views)",
                   {{"scales", ValueKind::list, Value::of_list({224, 256, 384, 480, 640}), "short-side lengths"},
                    size},
                   nullptr});
}

}  // namespace augflow::augment
