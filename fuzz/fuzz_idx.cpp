// libFuzzer harness: the IDX reader (pipeline::open_idx_bytes, which open_idx uses), plain and
// gzipped. The input is split in two at a point chosen by its first byte: images, then labels.
// The first half is also paired with a valid label file, so mutations of the image file are
// not all stopped by the label file's checks.
#include <cstring>
#include <span>
#include <vector>

#include "fuzz/fuzz_common.hpp"
#include "pipeline/dataset.hpp"

namespace {

std::vector<std::uint8_t> labels_file(std::uint32_t count) {
  std::vector<std::uint8_t> out{0, 0, 8, 1, std::uint8_t(count >> 24), std::uint8_t(count >> 16),
                                std::uint8_t(count >> 8), std::uint8_t(count)};
  for (std::uint32_t i = 0; i < count; ++i) out.push_back(static_cast<std::uint8_t>(i % 10));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace augflow;
  if (size < 1) return 0;
  const std::span<const std::uint8_t> all(data, size);
  // Byte 0 picks the split as a fraction of the rest, so seeds keep their structure.
  const std::size_t rest = size - 1;
  const std::size_t cut = rest * data[0] / 255;
  const auto images = all.subspan(1, cut);
  const auto labels = all.subspan(1 + cut);
  fuzz::expect_ok_or_error([&] { (void)pipeline::open_idx_bytes(images, labels, "fuzz"); });
  fuzz::expect_ok_or_error([&] { (void)pipeline::open_idx_bytes(images, labels, "fashion-mnist:fuzz"); });
  // The image count from a plain header (capped, to keep the paired label file small).
  if (images.size() >= 8) {
    std::uint32_t count = (std::uint32_t(images[4]) << 24) | (std::uint32_t(images[5]) << 16) |
                          (std::uint32_t(images[6]) << 8) | images[7];
    if (count <= 4096) {
      const auto good = labels_file(count);
      fuzz::expect_ok_or_error([&] { (void)pipeline::open_idx_bytes(images, good, "fuzz"); });
    }
  }
  return 0;
}
