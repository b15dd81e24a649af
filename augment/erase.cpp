// erase(p, area, ratio, value): random erasing (Zhong et al. 2017) / cutout (DeVries & Taylor
// 2017), with torchvision RandomErasing's sampling: with probability p, a rectangle of area
// fraction in `area` and aspect ratio log-uniform in `ratio` (10 tries) is filled with
//   mean:   the ImageNet mean colour (becomes 0 after normalize(imagenet), as torchvision's 0),
//   zero:   black,
//   random: per-pixel uniform noise from the sample's generator.
#include <cmath>

#include "augment/registry.hpp"
#include "common/error.hpp"

namespace augflow::augment {
namespace {

class Erase final : public Transform {
 public:
  explicit Erase(const Args& args)
      : Transform(args), p_(args.number("p")), area_(args.range("area")), ratio_(args.range("ratio")),
        value_(args.word("value")) {
    if (!(p_ >= 0 && p_ <= 1)) throw ConfigError(name() + ": p must lie in [0, 1], got " + format_number(p_));
    if (!(area_.first > 0 && area_.first <= area_.second && area_.second <= 1))
      throw ConfigError(name() + ": area must satisfy 0 < lo <= hi <= 1, got " + format_number(area_.first) +
                        ":" + format_number(area_.second));
    if (!(ratio_.first > 0 && ratio_.first <= ratio_.second))
      throw ConfigError(name() + ": ratio must satisfy 0 < lo <= hi, got " + format_number(ratio_.first) +
                        ":" + format_number(ratio_.second));
  }

  Params sample(const ImageInfo& in, Rng& rng) const override {
    EraseParams p;
    if (!rng.bernoulli(p_)) return p;
    const double area = static_cast<double>(in.width) * in.height;
    for (int attempt = 0; attempt < 10; ++attempt) {
      const double target = area * rng.uniform(area_.first, area_.second);
      const double aspect = std::exp(rng.uniform(std::log(ratio_.first), std::log(ratio_.second)));
      const int h = static_cast<int>(std::lround(std::sqrt(target * aspect)));
      const int w = static_cast<int>(std::lround(std::sqrt(target / aspect)));
      if (w < 1 || h < 1 || w > in.width || h > in.height) continue;
      p.erase = true;
      p.rect = {static_cast<int>(rng.uniform_int(0, in.width - w)),
                static_cast<int>(rng.uniform_int(0, in.height - h)), w, h};
      p.noise_seed = rng.next_u64();
      return p;
    }
    return p;  // no rectangle fitted: leave the image as it is, like torchvision
  }

  cv::Mat apply(const cv::Mat& image, const Params& params) const override {
    check_image(image, name());
    const auto& p = std::get<EraseParams>(params);
    if (!p.erase) return image;
    if ((p.rect & cv::Rect(0, 0, image.cols, image.rows)) != p.rect)
      throw ShapeError(name() + ": rectangle outside the image (params for another size?)");
    cv::Mat out = image.clone();
    cv::Mat region = out(p.rect);
    if (value_ == "random") {
      Rng noise({p.noise_seed, 0, 0});
      for (int y = 0; y < region.rows; ++y) {
        std::uint8_t* row = region.ptr<std::uint8_t>(y);
        const int n = region.cols * region.channels();
        for (int i = 0; i < n; i += 8) {
          std::uint64_t bits = noise.next_u64();
          for (int k = i; k < std::min(n, i + 8); ++k, bits >>= 8) row[k] = static_cast<std::uint8_t>(bits);
        }
      }
    } else if (value_ == "mean") {
      // ImageNet mean (0.485, 0.456, 0.406) * 255 in BGR order; its grey for 1 channel.
      region.setTo(image.channels() == 3 ? cv::Scalar(104, 116, 124) : cv::Scalar::all(117));
    } else {
      region.setTo(cv::Scalar::all(0));
    }
    return out;
  }

 private:
  double p_;
  std::pair<double, double> area_, ratio_;
  std::string value_;
};

}  // namespace

void add_erase_steps(std::vector<StepInfo>& steps) {
  steps.push_back(
      {"erase", StepKind::train, "random erasing / cutout: with probability p, fill a random rectangle",
       {{"p", ValueKind::number, Value::number(0.5), "probability of erasing"},
        {"area", ValueKind::range, Value::range(0.02, 0.33), "area fraction lo:hi", {}, RangeFromNumber::exact},
        {"ratio", ValueKind::range, Value::range(0.3, 3.3), "aspect ratio lo:hi (log-uniform)", {}, RangeFromNumber::exact},
        {"value", ValueKind::word, Value::of_word("mean"), "fill", {"mean", "zero", "random"}}},
       [](const Args& a) -> TransformPtr { return std::make_unique<Erase>(a); }});
}

}  // namespace augflow::augment
