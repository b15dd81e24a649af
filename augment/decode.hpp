// Image decoding to the one pixel format the augment library works in.
//
// Contract:
// - Output is always 8-bit, HWC, with exactly the channel count asked for (1 = grey, 3 = BGR,
//   OpenCV's order): grey is expanded, colour reduced (BT.601 luma), alpha dropped, 16-bit
//   scaled to 8-bit (v * 255 / 65535, rounded), EXIF orientation applied. So every image of a
//   batch has one shape and layout whatever the file held.
// - The header is read before anything large is allocated: an image over `max_pixels`, or whose
//   header is corrupt, is rejected with a DataError before decoding (OpenCV's own limit is read
//   once at load time, see PITFALLS.md).
// - A file that cannot be decoded (GIF, which OpenCV 4.6 lacks; truncated or corrupt data; an
//   unknown format) throws DataError with the reason. A truncated JPEG counts as bad even though
//   libjpeg would return grey rows for the missing part.
// - JPEG goes through libjpeg-turbo directly so that only what the augmentation keeps is decoded:
//   `region` limits the decode to the rows and columns of a crop (jpeg_crop_scanline /
//   jpeg_skip_scanlines), and `scale_denom` 2, 4 or 8 uses the scaled IDCT when the crop will be
//   shrunk by at least that much anyway. Other formats decode whole through OpenCV and are then
//   cut to the region and reduced, so callers see the same contract for every format.
//
// API: public, part of augflow::augment; installed as <augflow/augment/decode.hpp>.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace augflow::augment {

/// What the header says, in displayed (EXIF-oriented) coordinates.
struct ImageHeader {
  std::string format;     ///< "jpeg", "png", "bmp", "webp", "tiff", "pnm", "gif", ...
  int width = 0;          ///< after EXIF orientation
  int height = 0;         ///< after EXIF orientation
  int channels = 0;       ///< as stored: 1 grey, 2 grey+alpha, 3 colour, 4 colour+alpha or CMYK (0 if unknown)
  int bit_depth = 8;      ///< 8, 16, or the stored depth (decoding accepts 8 and 16 only; 0 if unknown)
  int orientation = 1;    ///< EXIF orientation tag 1..8 (1 = as stored)
};

/// Default pixel limit: 100 megapixels (`--max-pixels`).
inline constexpr std::int64_t kDefaultMaxPixels = 100'000'000;

/// Reads only the header. Throws DataError (empty path; callers add it) for an unknown format,
/// a corrupt or truncated header, zero sizes, or a format OpenCV 4.6 cannot decode (GIF).
ImageHeader probe_image(std::span<const std::uint8_t> bytes);

struct DecodeOptions {
  int channels = 3;                       ///< 1 or 3
  cv::Rect region{};                      ///< in displayed coordinates; empty = whole image
  int scale_denom = 1;                    ///< 1, 2, 4 or 8
  std::int64_t max_pixels = kDefaultMaxPixels;
};

struct DecodedImage {
  /// CV_8UC1 or CV_8UC3 (BGR). Size is ceil(region.width / scale_denom) x
  /// ceil(region.height / scale_denom) in general; pixel (u, v) samples the source area
  /// [region.x + u*scale_denom, region.x + (u+1)*scale_denom) x [...] (likewise for v);
  /// approximately so for non-JPEG regions that are not a multiple of scale_denom and for
  /// EXIF-rotated JPEGs at scale_denom > 1 (off by less than scale_denom source pixels).
  cv::Mat image;
  /// The source region the image covers: contains the requested region (it may be larger, e.g.
  /// aligned to JPEG blocks) and lies inside the image. Whole image when none was requested.
  /// The requested pixels equal a full decode exactly; the outermost JPEG column on a side
  /// that is not an image edge may differ slightly (libjpeg's upsampling treats it as an edge).
  cv::Rect region;
  int scale_denom = 1;
  ImageHeader header;
};

/// Decodes `bytes` (the whole file). Throws DataError as described above; the path is left
/// empty in the error (the caller knows it and rethrows with it).
DecodedImage decode_image(std::span<const std::uint8_t> bytes, const DecodeOptions& options = {});

/// Reads a whole file. Throws IoError naming the path when it cannot be opened or read.
std::vector<std::uint8_t> read_file(const std::filesystem::path& path);

/// Convenience: read_file + decode_image, with the path put into any DataError.
DecodedImage decode_file(const std::filesystem::path& path, const DecodeOptions& options = {});

}  // namespace augflow::augment
