// libFuzzer harness: the image decode wrapper (augment/decode.hpp): header probing, the pixel
// limit, and decoding (libjpeg-turbo for JPEG with region and scaled decodes, OpenCV for the
// rest). The pixel limit is lowered to 4 megapixels so that the harness explores headers, not
// allocations. A header that probes fine is decoded whole (3 channels), then as grey with its
// centre region at half scale, the way the loader decodes a crop.
#include <span>

#include "augment/decode.hpp"
#include "fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace augflow;
  const std::span<const std::uint8_t> bytes(data, size);
  constexpr std::int64_t kMaxPixels = 4'000'000;
  augment::ImageHeader header;
  bool probed = false;
  fuzz::expect_ok_or_error([&] {
    header = augment::probe_image(bytes);
    probed = true;
  });
  augment::DecodeOptions whole;
  whole.max_pixels = kMaxPixels;
  fuzz::expect_ok_or_error([&] {
    const auto d = augment::decode_image(bytes, whole);
    fuzz::require(d.image.type() == CV_8UC3, "decode: 3 channels asked, another type returned");
  });
  if (probed && header.width > 1 && header.height > 1) {
    augment::DecodeOptions crop;
    crop.channels = 1;
    crop.max_pixels = kMaxPixels;
    crop.region = cv::Rect(header.width / 4, header.height / 4, std::max(1, header.width / 2),
                           std::max(1, header.height / 2));
    crop.scale_denom = 2;
    fuzz::expect_ok_or_error([&] {
      const auto d = augment::decode_image(bytes, crop);
      fuzz::require(d.image.type() == CV_8UC1, "decode: 1 channel asked, another type returned");
    });
  }
  return 0;
}
