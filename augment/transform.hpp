// The transform interface of the augment library.
//
// A random transform is configuration (a const object) plus two steps, as in dlib's
// make_crop_plan/extract_image_chip and Albumentations' get_params/apply:
//   Params p = t.sample(info, rng);   // every random choice, as a small printable value
//   t.apply(image, p);                // pure pixel work, replayable from p alone
// Images stay 8-bit HWC (1 or 3 channels, BGR) through every transform; conversion to float
// CHW happens once, in Normalize (normalize.hpp).
//
// API: public, part of augflow::augment; installed as <augflow/augment/transform.hpp>.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json_fwd.hpp>
#include <opencv2/core.hpp>

#include "augflow/augment/args.hpp"
#include "augflow/common/rng.hpp"

namespace augflow::augment {

// The generator lives in common/ (the model draws its masks from it too); augment code names
// it unqualified.
using augflow::mix64;
using augflow::Rng;
using augflow::SampleKey;

/// What a transform needs to know about its input before seeing pixels.
struct ImageInfo {
  int width = 0;
  int height = 0;
  int channels = 3;
  bool operator==(const ImageInfo&) const = default;
};

struct NoParams {
  bool operator==(const NoParams&) const = default;
};

struct FlipParams {
  bool flip = false;
  bool operator==(const FlipParams&) const = default;
};

/// Every crop (scale_crop, resized_crop, pad_crop) is "take this source rectangle, resize it
/// to out". The rectangle is in the input's pixel coordinates and may reach outside the image
/// (pad_crop); the outside is filled by the transform's border mode.
struct CropParams {
  cv::Rect source;
  cv::Size out;
  int scale_length = 0;  ///< scale_crop: the sampled short-side length L (0 for other crops)
  bool operator==(const CropParams&) const = default;
};

struct JitterParams {
  double brightness = 1.0;  ///< multiplicative factor
  double contrast = 1.0;    ///< factor around the mean grey level
  double saturation = 1.0;  ///< factor around each pixel's grey level
  double hue = 0.0;         ///< shift as a fraction of the colour wheel, in [-0.5, 0.5]
  std::array<std::uint8_t, 4> order{0, 1, 2, 3};  ///< 0 brightness, 1 contrast, 2 saturation, 3 hue
  bool operator==(const JitterParams&) const = default;
};

struct LightingParams {
  std::array<double, 3> alpha{};  ///< per principal component, N(0, std)
  bool operator==(const LightingParams&) const = default;
};

struct AffineParams {
  double translate_x = 0.0;  ///< pixels
  double translate_y = 0.0;  ///< pixels
  double rotate = 0.0;       ///< degrees, counter-clockwise
  double scale_x = 1.0;      ///< isotropic scale times stretch
  double scale_y = 1.0;
  double shear = 0.0;        ///< degrees, along x
  bool operator==(const AffineParams&) const = default;
};

struct EraseParams {
  bool erase = false;
  cv::Rect rect;
  std::uint64_t noise_seed = 0;  ///< for value=random: the fill is a pure function of this
  bool operator==(const EraseParams&) const = default;
};

/// The sampled parameters of one transform for one image.
using Params = std::variant<NoParams, FlipParams, CropParams, JitterParams, LightingParams,
                            AffineParams, EraseParams>;

/// One line such as "scale_crop: L=301 source=[12,40 300x300] out=224x224".
std::string to_string(const Params& params);
nlohmann::json to_json(const Params& params);

class Transform {
 public:
  explicit Transform(Args args) : args_(std::move(args)) {}
  virtual ~Transform() = default;
  Transform(const Transform&) = delete;
  Transform& operator=(const Transform&) = delete;

  /// Registry name, e.g. "scale_crop".
  const std::string& name() const { return args_.name(); }
  /// The resolved configuration (every parameter, defaults filled in).
  const Args& args() const { return args_; }

  /// Draws every random choice for an input described by `in`. Uses only `rng`.
  virtual Params sample(const ImageInfo& in, Rng& rng) const = 0;
  /// Size and channels of the result of apply(image with `in`, params).
  virtual ImageInfo output_info(const ImageInfo& in, const Params& params) const {
    (void)params;
    return in;
  }
  /// Pure function of (image, params): replaying saved params gives the same bytes.
  virtual cv::Mat apply(const cv::Mat& image, const Params& params) const = 0;

 private:
  Args args_;
};

using TransformPtr = std::unique_ptr<const Transform>;

/// Throws ShapeError unless `image` is 8-bit with 1 or 3 channels and not empty.
void check_image(const cv::Mat& image, std::string_view who);

}  // namespace augflow::augment
