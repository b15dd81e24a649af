#include "augment/normalize.hpp"

#include <array>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "augment/registry.hpp"
#include "augment/transform.hpp"
#include "common/error.hpp"

namespace augflow::augment {
namespace {

// ImageNet statistics of RGB values in [0, 1] (torchvision's Normalize in its reference scripts).
constexpr std::array<double, 3> kImagenetMean{0.485, 0.456, 0.406};
constexpr std::array<double, 3> kImagenetStd{0.229, 0.224, 0.225};

Args default_args() {
  return Args("normalize", {{"preset", Value::of_word("none")},
                            {"mean", Value::of_list({})},
                            {"std", Value::of_list({})}});
}

}  // namespace

Normalize::Normalize() : args_(default_args()) { build_tables(); }

Normalize::Normalize(const Args& args) : args_(args) {
  std::string preset = args.word("preset");
  // normalize(mean=[...], std=[...]) leaves preset at its default: that means custom.
  if (preset == "imagenet" && !(args.list("mean").empty() && args.list("std").empty())) {
    preset = "custom";
    auto values = args.values();
    values["preset"] = Value::of_word(preset);
    args_ = Args(args.name(), std::move(values));
  }
  const auto& mean = args.list("mean");
  const auto& stdev = args.list("std");
  if (preset == "custom") {
    if (mean.empty() || mean.size() != stdev.size() || mean.size() > 3 || mean.size() == 2)
      throw ConfigError("normalize: preset=custom needs mean=[...] and std=[...] with 1 or 3 values each");
    for (std::size_t c = 0; c < 3; ++c) {
      mean_[c] = mean[mean.size() == 1 ? 0 : c];
      std_[c] = stdev[stdev.size() == 1 ? 0 : c];
      if (!(std_[c] > 0)) throw ConfigError("normalize: std values must be > 0, got " + format_number(std_[c]));
    }
    build_tables();
    return;
  }
  if (!mean.empty() || !stdev.empty())
    throw ConfigError("normalize: mean/std are given with preset=custom only (got preset=" + preset + ")");
  if (preset == "imagenet") {
    mean_ = kImagenetMean;
    std_ = kImagenetStd;
  }
  build_tables();
}

void Normalize::build_tables() {
  for (int c = 0; c < 4; ++c) {
    const double m = c == 3 ? (mean_[0] + mean_[1] + mean_[2]) / 3 : mean_[c];
    const double s = c == 3 ? (std_[0] + std_[1] + std_[2]) / 3 : std_[c];
    for (int v = 0; v < 256; ++v) tables_[c][v] = static_cast<float>((v / 255.0 - m) / s);
  }
}

void Normalize::to_chw(const cv::Mat& image, float* chw) const {
  check_image(image, "normalize");
  const int channels = image.channels();
  const std::size_t plane = image.total();
  if (channels == 1) {
    // A continuous image is one long row (28-pixel rows would leave most lookups to the tail).
    const bool one_row = image.isContinuous();
    const int rows = one_row ? 1 : image.rows;
    const int cols = one_row ? static_cast<int>(plane) : image.cols;
    const float* table = tables_[3].data();
    std::size_t i = 0;
    for (int y = 0; y < rows; ++y) {
      const std::uint8_t* px = image.ptr<std::uint8_t>(y);
      int x = 0;
#if defined(__AVX512F__)
      // 16 lookups per gather: the scalar loop was half of the loader's time on small grey
      // images (Fashion-MNIST), which a search pays on every core. Same table, same values.
      for (; x + 16 <= cols; x += 16, i += 16) {
        const __m512i index = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(px + x)));
        _mm512_storeu_ps(chw + i, _mm512_i32gather_ps(index, table, 4));
      }
#endif
      for (; x < cols; ++x, ++i) chw[i] = table[px[x]];
    }
    return;
  }
  float* r = chw;
  float* g = chw + plane;
  float* b = chw + 2 * plane;
  std::size_t i = 0;
  for (int y = 0; y < image.rows; ++y) {
    // Memory is BGR; planes are written R, G, B.
    const std::uint8_t* px = image.ptr<std::uint8_t>(y);
    for (int x = 0; x < image.cols; ++x, ++i, px += 3) {
      b[i] = tables_[2][px[0]];
      g[i] = tables_[1][px[1]];
      r[i] = tables_[0][px[2]];
    }
  }
}

void add_normalize_steps(std::vector<StepInfo>& steps) {
  steps.push_back(
      {"normalize", StepKind::normalize,
       "last step: (x/255 - mean)/std per channel, written as float CHW (RGB planes)",
       {{"preset", ValueKind::word, Value::of_word("imagenet"), "imagenet, none (x/255), or custom (give mean and std)",
         {"imagenet", "none", "custom"}},
        {"mean", ValueKind::list, Value::of_list({}), "per-channel means in [0,1], RGB order (preset=custom)"},
        {"std", ValueKind::list, Value::of_list({}), "per-channel standard deviations (preset=custom)"}},
       nullptr});
}

}  // namespace augflow::augment
