#include "pipeline/defaults.hpp"

#include <algorithm>
#include <fstream>
#include <vector>

#include "augment/decode.hpp"
#include "common/error.hpp"

namespace augflow::pipeline {
namespace {

/// Headers sit at the start of a file; 256 KB covers a JPEG's EXIF block with its thumbnail.
constexpr std::size_t kHeaderBytes = 256 * 1024;

std::vector<std::uint8_t> read_prefix(const std::filesystem::path& path, std::size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::uint8_t> data(bytes);
  if (!in) return {};
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(bytes));
  data.resize(static_cast<std::size_t>(in.gcount()));
  return data;
}

int median(std::vector<int> values) {
  if (values.empty()) return 0;
  const auto middle = values.begin() + static_cast<std::ptrdiff_t>(values.size() / 2);
  std::nth_element(values.begin(), middle, values.end());
  return *middle;
}

std::string resnet_recipe(int crop, int min_side, int max_side) {
  return "hflip | scale_crop(" + std::to_string(min_side) + "," + std::to_string(max_side) + "," +
         std::to_string(crop) + ") | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)";
}

/// The crop of the ResNet recipe for a median short side m > 64: 224 for photos, else the
/// multiple of 16 up to 7/8 of m (at least 64).
int resnet_crop(int m) { return m >= 256 ? 224 : std::max(64, m * 7 / 8 / 16 * 16); }

}  // namespace

ImageSurvey survey_images(const Dataset& data, std::size_t max_files) {
  ImageSurvey survey;
  if (data.in_memory()) {
    survey.median_width = data.cols;
    survey.median_height = data.rows;
    survey.median_short_side = std::min(data.rows, data.cols);
    return survey;
  }
  const std::size_t n = data.paths.size();
  const std::size_t count = std::min(n, max_files);
  std::vector<int> widths, heights, short_sides;
  for (std::size_t k = 0; k < count; ++k) {
    // Evenly spread over the listing, which is sorted by class: every class is represented.
    const std::size_t i = k * n / count;
    try {
      const auto bytes = read_prefix(data.paths[i], kHeaderBytes);
      const augment::ImageHeader header = augment::probe_image(bytes);
      widths.push_back(header.width);
      heights.push_back(header.height);
      short_sides.push_back(std::min(header.width, header.height));
      ++survey.probed;
    } catch (const Error&) {
      ++survey.unreadable;  // the loader reports and skips it when it gets there
    }
  }
  survey.median_width = median(widths);
  survey.median_height = median(heights);
  survey.median_short_side = median(short_sides);
  return survey;
}

std::string default_aug_for_files(int m) {
  if (m <= 64) {
    const int side = std::clamp((m + 2) / 4 * 4, 16, 64);
    const int pad = std::max(2, side / 8);
    return "center_crop(" + std::to_string(side) + "," + std::to_string(side) + ") | pad_crop(" +
           std::to_string(pad) + "," + std::to_string(side) + ") | hflip | normalize(imagenet)";
  }
  if (m >= 256) return resnet_recipe(224, 256, 480);
  const int crop = resnet_crop(m);
  return resnet_recipe(crop, (crop * 8 + 6) / 7, (crop * 15 + 6) / 7);
}

DataDefaults choose_data_defaults(const Dataset& data) {
  DataDefaults d;
  if (data.in_memory()) {
    d.model = kSmallImageModel;
    d.aug = "pad_crop(2," + std::to_string(data.rows) + ") | hflip | normalize(none)";
    d.why = std::to_string(data.cols) + "x" + std::to_string(data.rows) + " images in memory";
  } else {
    const ImageSurvey s = survey_images(data);
    if (s.probed == 0)
      throw DataError(data.name, "none of the " + std::to_string(s.unreadable) +
                                     " image headers read could be decoded; check the files, or give --model "
                                     "and --aug yourself");
    d.aug = default_aug_for_files(s.median_short_side);
    const bool small = s.median_short_side <= 64 || resnet_crop(s.median_short_side) < 96;
    d.model = small ? kSmallImageModel : kLargeImageModel;
    d.why = "median image " + std::to_string(s.median_width) + "x" + std::to_string(s.median_height) +
            " (short side " + std::to_string(s.median_short_side) + ", " + std::to_string(s.probed) +
            " headers read)";
  }
  return d;
}

}  // namespace augflow::pipeline
