// hflip(p), vflip(p): mirror the image with probability p.
#include <opencv2/core.hpp>

#include "augment/registry.hpp"
#include "common/error.hpp"

namespace augflow::augment {
namespace {

class Flip final : public Transform {
 public:
  Flip(const Args& args, int axis) : Transform(args), p_(args.number("p")), axis_(axis) {
    if (!(p_ >= 0.0 && p_ <= 1.0))
      throw ConfigError(name() + ": p must lie in [0, 1], got " + format_number(p_));
  }
  Params sample(const ImageInfo&, Rng& rng) const override { return FlipParams{rng.bernoulli(p_)}; }
  cv::Mat apply(const cv::Mat& image, const Params& params) const override {
    check_image(image, name());
    if (!std::get<FlipParams>(params).flip) return image;
    cv::Mat out;
    cv::flip(image, out, axis_);
    return out;
  }

 private:
  double p_;
  int axis_;  // OpenCV: 1 mirrors left-right, 0 top-bottom
};

}  // namespace

void add_flip_steps(std::vector<StepInfo>& steps) {
  const ParamSpec p{"p", ValueKind::number, Value::number(0.5), "probability of flipping, in [0,1]"};
  steps.push_back({"hflip", StepKind::train, "mirror left-right with probability p", {p},
                   [](const Args& a) -> TransformPtr { return std::make_unique<Flip>(a, 1); }});
  steps.push_back({"vflip", StepKind::train, "mirror top-bottom with probability p", {p},
                   [](const Args& a) -> TransformPtr { return std::make_unique<Flip>(a, 0); }});
}

}  // namespace augflow::augment
