// Colour augmentation on 8-bit images.
// - jitter(brightness, contrast, saturation, hue): torchvision's ColorJitter semantics. Each
//   factor is uniform in its range (a single number b means max(0,1-b):1+b; hue h means -h:h,
//   |h| <= 0.5), and the four adjustments run in a random order per image.
//   Brightness and contrast are per-value maps, so consecutive ones are composed into one
//   256-entry lookup table and applied in a single pass. Contrast needs the mean grey level of
//   the image it sees, so a pending table is applied before a contrast step measures it.
// - lighting(std): AlexNet's PCA colour noise (Krizhevsky et al. 2012, section 4.1): adds
//   eigvec * (alpha * eigval) to every pixel, alpha ~ N(0, std), with the ImageNet RGB
//   eigenvectors/eigenvalues (for values in [0,1]) as in fb.resnet.torch.
#include <algorithm>
#include <array>
#include <cmath>

#include <opencv2/imgproc.hpp>

#include "augment/registry.hpp"
#include "common/error.hpp"

namespace augflow::augment {
namespace {

using Lut = std::array<std::uint8_t, 256>;

std::uint8_t saturate(double v) { return static_cast<std::uint8_t>(std::clamp(std::lround(v), 0l, 255l)); }

// BT.601 luma weights, in BGR order (OpenCV's channel order).
constexpr std::array<double, 3> kGreyWeightsBgr{0.114, 0.587, 0.299};

Lut identity_lut() {
  Lut lut;
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<std::uint8_t>(v);
  return lut;
}

void apply_lut(cv::Mat& image, const Lut& lut) {
  cv::LUT(image, cv::Mat(1, 256, CV_8U, const_cast<std::uint8_t*>(lut.data())), image);
}

/// Mean grey level (BT.601 luma) of an 8-bit image.
double mean_grey(const cv::Mat& image) {
  const cv::Scalar m = cv::mean(image);
  if (image.channels() == 1) return m[0];
  return kGreyWeightsBgr[0] * m[0] + kGreyWeightsBgr[1] * m[1] + kGreyWeightsBgr[2] * m[2];
}

/// out = f * pixel + (1 - f) * grey(pixel): torchvision's adjust_saturation, with OpenCV's
/// vectorised colour conversion and blend.
void adjust_saturation(cv::Mat& image, double factor) {
  cv::Mat grey, grey3;
  cv::cvtColor(image, grey, cv::COLOR_BGR2GRAY);
  cv::cvtColor(grey, grey3, cv::COLOR_GRAY2BGR);
  cv::addWeighted(image, factor, grey3, 1.0 - factor, 0.0, image);
}

void adjust_hue(cv::Mat& image, double shift) {
  // OpenCV's full-range HSV: H in 0..255 for a full turn, so the shift wraps modulo 256.
  cv::Mat hsv;
  cv::cvtColor(image, hsv, cv::COLOR_BGR2HSV_FULL);
  const int delta = static_cast<int>(std::lround(shift * 256.0));
  for (int y = 0; y < hsv.rows; ++y) {
    std::uint8_t* p = hsv.ptr<std::uint8_t>(y);
    for (int x = 0; x < hsv.cols; ++x, p += 3) p[0] = static_cast<std::uint8_t>((p[0] + delta) & 0xFF);
  }
  cv::cvtColor(hsv, image, cv::COLOR_HSV2BGR_FULL);
}

class Jitter final : public Transform {
 public:
  explicit Jitter(const Args& args)
      : Transform(args), brightness_(args.range("brightness")), contrast_(args.range("contrast")),
        saturation_(args.range("saturation")), hue_(args.range("hue")) {
    for (const auto& [key, range] : {std::pair{"brightness", brightness_}, {"contrast", contrast_},
                                     {"saturation", saturation_}}) {
      if (!(range.first >= 0 && range.first <= range.second))
        throw ConfigError(name() + ": " + key + " factors must satisfy 0 <= lo <= hi, got " +
                          format_number(range.first) + ":" + format_number(range.second));
    }
    if (!(hue_.first >= -0.5 && hue_.first <= hue_.second && hue_.second <= 0.5))
      throw ConfigError(name() + ": hue must satisfy -0.5 <= lo <= hi <= 0.5, got " +
                        format_number(hue_.first) + ":" + format_number(hue_.second));
  }

  Params sample(const ImageInfo&, Rng& rng) const override {
    JitterParams p;
    // A fixed number of draws whatever the ranges, so adding a parameter never shifts the others.
    p.brightness = rng.uniform(brightness_.first, brightness_.second);
    p.contrast = rng.uniform(contrast_.first, contrast_.second);
    p.saturation = rng.uniform(saturation_.first, saturation_.second);
    p.hue = rng.uniform(hue_.first, hue_.second);
    for (int i = 3; i > 0; --i) std::swap(p.order[i], p.order[rng.uniform_int(0, i)]);
    return p;
  }

  cv::Mat apply(const cv::Mat& image, const Params& params) const override {
    check_image(image, name());
    const auto& p = std::get<JitterParams>(params);
    cv::Mat out = image.clone();
    const bool colour = out.channels() == 3;
    Lut lut = identity_lut();
    bool lut_pending = false;  // lut holds maps not yet applied to `out`
    auto flush = [&] {
      if (lut_pending) apply_lut(out, lut);
      lut = identity_lut();
      lut_pending = false;
    };
    for (const auto op : p.order) {
      switch (op) {
        case 0:
          if (p.brightness == 1.0) break;
          for (auto& v : lut) v = saturate(v * p.brightness);
          lut_pending = true;
          break;
        case 1: {
          if (p.contrast == 1.0) break;
          flush();
          const double mean = mean_grey(out);
          for (auto& v : lut) v = saturate(mean + p.contrast * (v - mean));
          lut_pending = true;
          break;
        }
        case 2:
          if (!colour || p.saturation == 1.0) break;
          flush();
          adjust_saturation(out, p.saturation);
          break;
        case 3:
          if (!colour || p.hue == 0.0) break;
          flush();
          adjust_hue(out, p.hue);
          break;
      }
    }
    flush();
    return out;
  }

 private:
  std::pair<double, double> brightness_, contrast_, saturation_, hue_;
};

// ImageNet RGB principal components (fb.resnet.torch, for pixel values in [0,1]).
constexpr std::array<double, 3> kEigval{0.2175, 0.0188, 0.0045};
constexpr std::array<std::array<double, 3>, 3> kEigvecRgb{{
    {-0.5675, 0.7192, 0.4009},
    {-0.5808, -0.0045, -0.8140},
    {-0.5836, -0.6948, 0.4203},
}};

class Lighting final : public Transform {
 public:
  explicit Lighting(const Args& args) : Transform(args), std_(args.number("std")) {
    if (!(std_ >= 0 && std_ <= 10)) throw ConfigError(name() + ": std must be in [0, 10], got " + format_number(std_));
  }
  Params sample(const ImageInfo&, Rng& rng) const override {
    LightingParams p;
    for (auto& a : p.alpha) a = rng.normal() * std_;
    return p;
  }
  cv::Mat apply(const cv::Mat& image, const Params& params) const override {
    check_image(image, name());
    const auto& p = std::get<LightingParams>(params);
    std::array<double, 3> rgb{};
    for (int c = 0; c < 3; ++c)
      for (int k = 0; k < 3; ++k) rgb[c] += kEigvecRgb[c][k] * p.alpha[k] * kEigval[k] * 255.0;
    cv::Mat out = image.clone();
    if (out.channels() == 1) {
      Lut lut;
      const double grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
      for (int v = 0; v < 256; ++v) lut[v] = saturate(v + grey);
      apply_lut(out, lut);
      return out;
    }
    cv::Mat luts(1, 256, CV_8UC3);  // one table per channel, BGR order
    for (int v = 0; v < 256; ++v)
      for (int c = 0; c < 3; ++c) luts.at<cv::Vec3b>(0, v)[c] = saturate(v + rgb[2 - c]);
    cv::LUT(out, luts, out);
    return out;
  }

 private:
  double std_;
};

}  // namespace

void add_color_steps(std::vector<StepInfo>& steps) {
  steps.push_back(
      {"jitter", StepKind::train,
       "colour jitter (torchvision ColorJitter): factors sampled per image, applied in a random order",
       {{"brightness", ValueKind::range, Value::range(1, 1), "brightness factor lo:hi, or b for max(0,1-b):1+b", {}, RangeFromNumber::around_one},
        {"contrast", ValueKind::range, Value::range(1, 1), "contrast factor lo:hi, or c for max(0,1-c):1+c", {}, RangeFromNumber::around_one},
        {"saturation", ValueKind::range, Value::range(1, 1), "saturation factor lo:hi, or s for max(0,1-s):1+s", {}, RangeFromNumber::around_one},
        {"hue", ValueKind::range, Value::range(0, 0), "hue shift in turns lo:hi, or h for -h:h (|h| <= 0.5)", {}, RangeFromNumber::symmetric}},
       [](const Args& a) -> TransformPtr { return std::make_unique<Jitter>(a); }});
  steps.push_back(
      {"lighting", StepKind::train, "AlexNet PCA colour noise with ImageNet eigenvectors",
       {{"std", ValueKind::number, Value::number(0.1), "standard deviation of the component weights"}},
       [](const Args& a) -> TransformPtr { return std::make_unique<Lighting>(a); }});
}

}  // namespace augflow::augment
