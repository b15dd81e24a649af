// affine(translate, rotate, scale, stretch, shear): the lecture's geometric augmentations
// composed into ONE 2x3 matrix about the image centre and applied with ONE warpAffine, so the
// image is resampled once however many are enabled. Output size = input size.
//   translate t: shift by a fraction of the size, uniform in -t:t for x and y independently
//   rotate r: degrees, uniform in -r:r (counter-clockwise positive)
//   scale a:b: isotropic zoom factor, uniform in a:b
//   stretch s: width and height additionally scaled by independent factors in 1-s:1+s
//   shear k: degrees of shear along x, uniform in -k:k
#include <cmath>
#include <numbers>

#include <opencv2/imgproc.hpp>

#include "augment/registry.hpp"
#include "common/error.hpp"

namespace augflow::augment {
namespace {

int interpolation_flag(const std::string& word) {
  if (word == "nearest") return cv::INTER_NEAREST;
  if (word == "cubic") return cv::INTER_CUBIC;
  return cv::INTER_LINEAR;
}

int border_flag(const std::string& word) {
  if (word == "reflect") return cv::BORDER_REFLECT_101;
  if (word == "replicate") return cv::BORDER_REPLICATE;
  if (word == "wrap") return cv::BORDER_WRAP;
  return cv::BORDER_CONSTANT;
}

class Affine final : public Transform {
 public:
  explicit Affine(const Args& args)
      : Transform(args), translate_(args.range("translate")), rotate_(args.range("rotate")),
        scale_(args.range("scale")), stretch_(args.range("stretch")), shear_(args.range("shear")),
        interpolation_(interpolation_flag(args.word("interpolation"))),
        border_(border_flag(args.word("border"))) {
    auto ordered = [&](const char* key, std::pair<double, double> r, double lo, double hi) {
      if (!(r.first <= r.second && r.first >= lo && r.second <= hi))
        throw ConfigError(name() + ": " + key + " must satisfy " + format_number(lo) + " <= lo <= hi <= " +
                          format_number(hi) + ", got " + format_number(r.first) + ":" + format_number(r.second));
    };
    ordered("translate", translate_, -1, 1);
    ordered("rotate", rotate_, -360, 360);
    ordered("scale", scale_, 1e-3, 100);
    ordered("stretch", stretch_, 1e-3, 100);
    ordered("shear", shear_, -80, 80);
  }

  Params sample(const ImageInfo& in, Rng& rng) const override {
    AffineParams p;
    p.translate_x = rng.uniform(translate_.first, translate_.second) * in.width;
    p.translate_y = rng.uniform(translate_.first, translate_.second) * in.height;
    p.rotate = rng.uniform(rotate_.first, rotate_.second);
    const double zoom = rng.uniform(scale_.first, scale_.second);
    p.scale_x = zoom * rng.uniform(stretch_.first, stretch_.second);
    p.scale_y = zoom * rng.uniform(stretch_.first, stretch_.second);
    p.shear = rng.uniform(shear_.first, shear_.second);
    return p;
  }

  cv::Mat apply(const cv::Mat& image, const Params& params) const override {
    check_image(image, name());
    const auto& p = std::get<AffineParams>(params);
    if (p.translate_x == 0 && p.translate_y == 0 && p.rotate == 0 && p.scale_x == 1 &&
        p.scale_y == 1 && p.shear == 0)
      return image;
    cv::Mat out;
    cv::warpAffine(image, out, matrix(p, image.size()), image.size(), interpolation_, border_,
                   cv::Scalar::all(0));
    return out;
  }

  /// Maps output <- ... : M = T(centre + t) R(rotate) Sh(shear) S(sx, sy) T(-centre), as the
  /// forward map of input pixels to output pixels.
  static cv::Matx23d matrix(const AffineParams& p, cv::Size size) {
    const double cx = (size.width - 1) * 0.5, cy = (size.height - 1) * 0.5;
    const double a = p.rotate * std::numbers::pi / 180.0;
    const double sh = std::tan(p.shear * std::numbers::pi / 180.0);
    // Image rows grow downwards, so a counter-clockwise rotation on screen is R(-a) in (x, y).
    const cv::Matx22d rotation(std::cos(a), std::sin(a), -std::sin(a), std::cos(a));
    const cv::Matx22d shear(1, sh, 0, 1);
    const cv::Matx22d scale(p.scale_x, 0, 0, p.scale_y);
    const cv::Matx22d linear = rotation * shear * scale;
    const cv::Vec2d centre(cx, cy);
    const cv::Vec2d offset = centre + cv::Vec2d(p.translate_x, p.translate_y) - linear * centre;
    return {linear(0, 0), linear(0, 1), offset[0], linear(1, 0), linear(1, 1), offset[1]};
  }

 private:
  std::pair<double, double> translate_, rotate_, scale_, stretch_, shear_;
  int interpolation_;
  int border_;
};

}  // namespace

void add_affine_steps(std::vector<StepInfo>& steps) {
  steps.push_back(
      {"affine", StepKind::train,
       "translation, rotation, scale, stretch and shear composed into one matrix and one warpAffine",
       {{"translate", ValueKind::range, Value::range(0, 0), "shift as a fraction of the size, lo:hi or t for -t:t", {}, RangeFromNumber::symmetric},
        {"rotate", ValueKind::range, Value::range(0, 0), "degrees, lo:hi or r for -r:r", {}, RangeFromNumber::symmetric},
        {"scale", ValueKind::range, Value::range(1, 1), "isotropic zoom factor lo:hi", {}, RangeFromNumber::exact},
        {"stretch", ValueKind::range, Value::range(1, 1), "extra width/height factors lo:hi, or s for 1-s:1+s", {}, RangeFromNumber::around_one},
        {"shear", ValueKind::range, Value::range(0, 0), "x-shear in degrees, lo:hi or k for -k:k", {}, RangeFromNumber::symmetric},
        {"interpolation", ValueKind::word, Value::of_word("linear"), "resampling", {"linear", "nearest", "cubic"}},
        {"border", ValueKind::word, Value::of_word("constant"), "fill outside the source (constant = black)",
         {"constant", "reflect", "replicate", "wrap"}}},
       [](const Args& a) -> TransformPtr { return std::make_unique<Affine>(a); }});
}

}  // namespace augflow::augment
