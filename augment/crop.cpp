// Crops, all computed in source coordinates so that only the kept region is resized:
// - scale_crop(min, max, size): ResNet scale augmentation (He et al. 2015, section 3.4; Simonyan
//   & Zisserman 2014): the shorter side is resized to an integer L uniform in [min, max], then a
//   random size x size crop is taken. Defaults 256, 480, 224.
// - resized_crop(size, area, ratio): Inception-style random-resized crop (Szegedy et al. 2015):
//   a crop of area fraction in `area` and aspect ratio log-uniform in `ratio`, resized to
//   size x size; after 10 failed tries, the centre crop with the ratio clamped (torchvision's rule).
// - center_crop(resize, size): no randomness: the central crop after resizing the shorter side
//   (what validation uses after a scale_crop).
// - pad_crop(pad, size, border): CIFAR-style: pad by `pad` on every side, then a random
//   size x size crop. Inputs smaller than size - 2*pad are padded further, evenly, to size.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <opencv2/imgproc.hpp>

#include "augment/registry.hpp"
#include "augment/views.hpp"
#include "common/error.hpp"

namespace augflow::augment {
namespace {

int border_mode(const std::string& word) {
  if (word == "constant") return cv::BORDER_CONSTANT;
  if (word == "reflect") return cv::BORDER_REFLECT_101;
  if (word == "replicate") return cv::BORDER_REPLICATE;
  return cv::BORDER_WRAP;
}

void require_size(const std::string& who, int size) {
  if (size < 1 || size > 16384)
    throw ConfigError(who + ": size must be in [1, 16384], got " + std::to_string(size));
}

class CropBase : public Transform {
 public:
  CropBase(const Args& args, int size, int border) : Transform(args), size_(size), border_(border) {}
  ImageInfo output_info(const ImageInfo& in, const Params&) const override {
    return {size_, size_, in.channels};
  }
  cv::Mat apply(const cv::Mat& image, const Params& params) const override {
    return crop_resize(image, std::get<CropParams>(params), border_);
  }

 protected:
  int size_;
  int border_;
};

class ScaleCrop final : public CropBase {
 public:
  explicit ScaleCrop(const Args& args)
      : CropBase(args, args.integer("size"), cv::BORDER_REPLICATE),
        min_(args.integer("min")), max_(args.integer("max")) {
    require_size(name(), size_);
    if (min_ > max_)
      throw ConfigError(name() + ": min (" + std::to_string(min_) + ") is above max (" +
                        std::to_string(max_) + "); swap them");
    if (min_ < size_)
      throw ConfigError(name() + ": min (" + std::to_string(min_) + ") must be at least size (" +
                        std::to_string(size_) + "): the shorter side is resized to at least min before the crop");
  }
  Params sample(const ImageInfo& in, Rng& rng) const override {
    const int length = static_cast<int>(rng.uniform_int(min_, max_));
    const ShortSideCrop geometry(in, length, size_);
    const int x = static_cast<int>(rng.uniform_int(0, geometry.right));
    const int y = static_cast<int>(rng.uniform_int(0, geometry.bottom));
    return geometry.source(x, y);
  }

 private:
  int min_;
  int max_;
};

class ResizedCrop final : public CropBase {
 public:
  explicit ResizedCrop(const Args& args)
      : CropBase(args, args.integer("size"), cv::BORDER_REPLICATE),
        area_(args.range("area")), ratio_(args.range("ratio")) {
    require_size(name(), size_);
    if (!(area_.first > 0 && area_.first <= area_.second && area_.second <= 1))
      throw ConfigError(name() + ": area must satisfy 0 < lo <= hi <= 1, got " +
                        format_number(area_.first) + ":" + format_number(area_.second));
    if (!(ratio_.first > 0 && ratio_.first <= ratio_.second))
      throw ConfigError(name() + ": ratio must satisfy 0 < lo <= hi, got " +
                        format_number(ratio_.first) + ":" + format_number(ratio_.second));
  }
  Params sample(const ImageInfo& in, Rng& rng) const override {
    const double area = static_cast<double>(in.width) * in.height;
    const double log_lo = std::log(ratio_.first), log_hi = std::log(ratio_.second);
    for (int attempt = 0; attempt < kTries; ++attempt) {
      const double target = area * rng.uniform(area_.first, area_.second);
      const double aspect = std::exp(rng.uniform(log_lo, log_hi));
      const int w = static_cast<int>(std::lround(std::sqrt(target * aspect)));
      const int h = static_cast<int>(std::lround(std::sqrt(target / aspect)));
      if (w > 0 && h > 0 && w <= in.width && h <= in.height) {
        const int y = static_cast<int>(rng.uniform_int(0, in.height - h));
        const int x = static_cast<int>(rng.uniform_int(0, in.width - w));
        return CropParams{{x, y, w, h}, {size_, size_}, 0};
      }
    }
    // Fallback: the whole image, cut to the nearest allowed aspect ratio, centred.
    const double in_ratio = static_cast<double>(in.width) / in.height;
    int w = in.width, h = in.height;
    if (in_ratio < ratio_.first) {
      h = std::clamp(static_cast<int>(std::lround(w / ratio_.first)), 1, in.height);
    } else if (in_ratio > ratio_.second) {
      w = std::clamp(static_cast<int>(std::lround(h * ratio_.second)), 1, in.width);
    }
    return CropParams{{(in.width - w) / 2, (in.height - h) / 2, w, h}, {size_, size_}, 0};
  }

 private:
  static constexpr int kTries = 10;  // torchvision's RandomResizedCrop
  std::pair<double, double> area_;
  std::pair<double, double> ratio_;
};

/// The deterministic counterpart of scale_crop for validation: no random draw at all.
class CenterCrop final : public CropBase {
 public:
  explicit CenterCrop(const Args& args)
      : CropBase(args, args.integer("size"), cv::BORDER_REPLICATE), resize_(args.integer("resize")) {
    require_size(name(), size_);
    if (resize_ < size_)
      throw ConfigError(name() + ": resize (" + std::to_string(resize_) + ") must be at least size (" +
                        std::to_string(size_) + ")");
  }
  Params sample(const ImageInfo& in, Rng&) const override {
    const ShortSideCrop geometry(in, resize_, size_);
    return geometry.source(static_cast<int>(std::lround(geometry.right / 2.0)),
                           static_cast<int>(std::lround(geometry.bottom / 2.0)));
  }

 private:
  int resize_;
};

class PadCrop final : public CropBase {
 public:
  explicit PadCrop(const Args& args)
      : CropBase(args, args.integer("size"), border_mode(args.word("border"))), pad_(args.integer("pad")) {
    require_size(name(), size_);
    if (pad_ < 0 || pad_ > 4096) throw ConfigError(name() + ": pad must be in [0, 4096], got " + std::to_string(pad_));
  }
  Params sample(const ImageInfo& in, Rng& rng) const override {
    // Extra padding (split evenly) when even the padded image is smaller than the crop.
    const int extra_x = std::max(0, size_ - (in.width + 2 * pad_));
    const int extra_y = std::max(0, size_ - (in.height + 2 * pad_));
    const int padded_w = in.width + 2 * pad_ + extra_x;
    const int padded_h = in.height + 2 * pad_ + extra_y;
    const int x = static_cast<int>(rng.uniform_int(0, padded_w - size_));
    const int y = static_cast<int>(rng.uniform_int(0, padded_h - size_));
    return CropParams{{x - pad_ - extra_x / 2, y - pad_ - extra_y / 2, size_, size_}, {size_, size_}, 0};
  }

 private:
  int pad_;
};

}  // namespace

ShortSideCrop::ShortSideCrop(const ImageInfo& in, int length, int size)
    : in_(in), length_(length), size_(size) {
  const double scale = static_cast<double>(length) / std::min(in.width, in.height);
  const int resized_w = in.width <= in.height ? length : static_cast<int>(std::lround(in.width * scale));
  const int resized_h = in.height < in.width ? length : static_cast<int>(std::lround(in.height * scale));
  right = std::max(0, resized_w - size);
  bottom = std::max(0, resized_h - size);
  side_w_ = std::clamp(static_cast<int>(std::lround(size / scale)), 1, in.width);
  side_h_ = std::clamp(static_cast<int>(std::lround(size / scale)), 1, in.height);
}

CropParams ShortSideCrop::source(int x, int y) const {
  // Offsets 0..right of the resized image map onto 0..W-side of the source, proportionally.
  const int sx = right > 0 ? static_cast<int>(std::lround(static_cast<double>(x) * (in_.width - side_w_) / right)) : 0;
  const int sy = bottom > 0 ? static_cast<int>(std::lround(static_cast<double>(y) * (in_.height - side_h_) / bottom)) : 0;
  return CropParams{{sx, sy, side_w_, side_h_}, {size_, size_}, length_};
}

cv::Mat crop_resize(const cv::Mat& image, const CropParams& params, int border) {
  check_image(image, "crop");
  const cv::Rect bounds(0, 0, image.cols, image.rows);
  const cv::Rect& src = params.source;
  if (src.width <= 0 || src.height <= 0 || params.out.width <= 0 || params.out.height <= 0)
    throw ShapeError("crop: empty source or output rectangle");
  cv::Mat region;
  if ((src & bounds) == src) {
    region = image(src);
  } else {
    // Part of the rectangle lies outside: fill it as if the whole image had been padded with
    // the border mode and then cropped, copying only the rectangle's own pixels.
    region.create(src.size(), image.type());
    const std::size_t px = image.elemSize();
    std::vector<int> xs(src.width);
    for (int i = 0; i < src.width; ++i) xs[i] = cv::borderInterpolate(src.x + i, image.cols, border);
    for (int r = 0; r < src.height; ++r) {
      const int y = cv::borderInterpolate(src.y + r, image.rows, border);
      std::uint8_t* out = region.ptr<std::uint8_t>(r);
      if (y < 0) {
        std::memset(out, 0, px * src.width);
        continue;
      }
      const std::uint8_t* in = image.ptr<std::uint8_t>(y);
      for (int i = 0; i < src.width; ++i) {
        if (xs[i] < 0) std::memset(out + i * px, 0, px);
        else std::memcpy(out + i * px, in + xs[i] * px, px);
      }
    }
  }
  if (region.size() == params.out) return region.clone();
  const bool shrink_2x = region.cols >= 2 * params.out.width && region.rows >= 2 * params.out.height;
  cv::Mat out;
  cv::resize(region, out, params.out, 0, 0, shrink_2x ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

void add_crop_steps(std::vector<StepInfo>& steps) {
  steps.push_back(
      {"scale_crop", StepKind::train,
       "ResNet scale augmentation: shorter side to an integer L uniform in [min,max], then a random size x size crop",
       {{"min", ValueKind::integer, Value::integer(256), "smallest short-side length L"},
        {"max", ValueKind::integer, Value::integer(480), "largest short-side length L"},
        {"size", ValueKind::integer, Value::integer(224), "side of the square crop"}},
       [](const Args& a) -> TransformPtr { return std::make_unique<ScaleCrop>(a); }});
  steps.push_back(
      {"resized_crop", StepKind::train,
       "Inception-style random-resized crop: random area fraction and aspect ratio, resized to size x size",
       {{"size", ValueKind::integer, Value::integer(224), "side of the output"},
        {"area", ValueKind::range, Value::range(0.08, 1.0), "fraction of the image area kept, lo:hi", {}, RangeFromNumber::exact},
        {"ratio", ValueKind::range, Value::range(0.75, 4.0 / 3.0), "aspect ratio w/h, lo:hi (sampled in log space)", {}, RangeFromNumber::exact}},
       [](const Args& a) -> TransformPtr { return std::make_unique<ResizedCrop>(a); }});
  steps.push_back(
      {"center_crop", StepKind::train,
       "deterministic: shorter side to resize, then the central size x size crop (validation's counterpart of scale_crop)",
       {{"resize", ValueKind::integer, Value::integer(256), "short-side length before the crop"},
        {"size", ValueKind::integer, Value::integer(224), "side of the square crop"}},
       [](const Args& a) -> TransformPtr { return std::make_unique<CenterCrop>(a); }});
  steps.push_back(
      {"pad_crop", StepKind::train, "CIFAR-style: pad every side by pad, then a random size x size crop",
       {{"pad", ValueKind::integer, Value::integer(4), "pixels added on each side"},
        {"size", ValueKind::integer, Value::integer(32), "side of the square crop"},
        {"border", ValueKind::word, Value::of_word("constant"), "how padding is filled",
         {"constant", "reflect", "replicate", "wrap"}}},
       [](const Args& a) -> TransformPtr { return std::make_unique<PadCrop>(a); }});
}

}  // namespace augflow::augment
