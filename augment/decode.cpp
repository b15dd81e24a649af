// Image decoding: header probing for every supported format, libjpeg-turbo for JPEG (cropped,
// scaled), OpenCV for the rest. See decode.hpp for the contract.
#include "augment/decode.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <limits>
#include <new>
#include <string_view>
#include <system_error>
#include <utility>

// jpeglib.h needs FILE and size_t declared first (cstdio above).
#include <jerror.h>  // JWRN_* message codes
#include <jpeglib.h>
#include <zlib.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.hpp"

namespace augflow::augment {
namespace {

// OpenCV's own per-side limit (CV_IO_MAX_IMAGE_WIDTH/HEIGHT): larger headers are corrupt or
// hostile, and the limit keeps every size computation far from int overflow.
constexpr std::int64_t kMaxSide = 1 << 20;

[[noreturn]] void fail(std::string reason) { throw DataError({}, std::move(reason)); }

// Bounds-checked reads: every header field goes through here, so a truncated or hostile header
// throws DataError instead of reading past the end.
class Reader {
 public:
  Reader(std::span<const std::uint8_t> bytes, const char* format) : b_(bytes), format_(format) {}

  std::size_t size() const { return b_.size(); }
  bool has(std::uint64_t offset, std::uint64_t count) const {
    return offset <= b_.size() && count <= b_.size() - offset;
  }
  void need(std::uint64_t offset, std::uint64_t count) const {
    if (!has(offset, count)) fail(std::string("truncated ") + format_ + " header");
  }
  std::uint8_t u8(std::uint64_t offset) const {
    need(offset, 1);
    return b_[offset];
  }
  std::uint16_t u16(std::uint64_t offset, bool little) const {
    need(offset, 2);
    const std::uint16_t a = b_[offset], b = b_[offset + 1];
    return little ? static_cast<std::uint16_t>(a | (b << 8))
                  : static_cast<std::uint16_t>((a << 8) | b);
  }
  std::uint32_t u32(std::uint64_t offset, bool little) const {
    need(offset, 4);
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const std::uint32_t byte = b_[offset + (little ? 3 - i : i)];
      v = (v << 8) | byte;
    }
    return v;
  }
  std::uint64_t u64(std::uint64_t offset, bool little) const {
    const std::uint64_t lo = u32(offset + (little ? 0 : 4), little);
    const std::uint64_t hi = u32(offset + (little ? 4 : 0), little);
    return (hi << 32) | lo;
  }
  std::uint16_t be16(std::uint64_t offset) const { return u16(offset, false); }
  std::uint32_t be32(std::uint64_t offset) const { return u32(offset, false); }
  std::uint16_t le16(std::uint64_t offset) const { return u16(offset, true); }
  std::uint32_t le32(std::uint64_t offset) const { return u32(offset, true); }
  bool matches(std::uint64_t offset, std::string_view text) const {
    return has(offset, text.size()) &&
           std::memcmp(b_.data() + offset, text.data(), text.size()) == 0;
  }

 private:
  std::span<const std::uint8_t> b_;
  const char* format_;
};

void check_size(const char* format, std::int64_t width, std::int64_t height) {
  if (width <= 0 || height <= 0 || width > kMaxSide || height > kMaxSide) {
    fail(std::string("corrupt ") + format + " header: image size " + std::to_string(width) + "x" +
         std::to_string(height) + " is zero or absurd (each side must be 1.." +
         std::to_string(kMaxSide) + ")");
  }
}

// ---------------------------------------------------------------------------------------------
// JPEG

struct JpegLayout {
  ImageHeader header;
  int stored_width = 0;  // as in the SOF, before EXIF orientation
  int stored_height = 0;
  int components = 0;
  std::size_t sos_offset = 0;  // offset of the first SOS marker
};

// Orientation from an Exif APP1 payload (after "Exif\0\0"). Metadata damage must not make the
// picture unreadable (libjpeg ignores APP1), so any problem yields 1.
int parse_exif_orientation(std::span<const std::uint8_t> tiff) {
  try {
    const Reader r(tiff, "EXIF");
    bool little = false;
    if (r.matches(0, "II")) {
      little = true;
    } else if (!r.matches(0, "MM")) {
      return 1;
    }
    if (r.u16(2, little) != 42) return 1;
    const std::uint64_t ifd = r.u32(4, little);
    const std::uint32_t count = r.u16(ifd, little);
    for (std::uint32_t i = 0; i < count; ++i) {
      const std::uint64_t entry = ifd + 2 + 12ull * i;
      if (r.u16(entry, little) != 0x0112) continue;
      const std::uint16_t type = r.u16(entry + 2, little);
      std::uint32_t value = 0;
      if (type == 3) {
        value = r.u16(entry + 8, little);
      } else if (type == 4) {
        value = r.u32(entry + 8, little);
      } else {
        return 1;
      }
      return value >= 1 && value <= 8 ? static_cast<int>(value) : 1;
    }
  } catch (const DataError&) {
  }
  return 1;
}

JpegLayout parse_jpeg(std::span<const std::uint8_t> bytes) {
  const Reader r(bytes, "JPEG");
  JpegLayout layout;
  layout.header.format = "jpeg";
  bool have_sof = false;
  bool have_exif = false;
  std::size_t pos = 2;  // after SOI
  for (;;) {
    // Bytes between segments are skipped as libjpeg does (it warns "extraneous bytes").
    while (pos < bytes.size() && bytes[pos] != 0xFF) ++pos;
    while (pos < bytes.size() && bytes[pos] == 0xFF) ++pos;  // fill bytes
    if (pos >= bytes.size()) fail("truncated JPEG header (no start of scan)");
    const std::uint8_t marker = bytes[pos++];
    if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue;
    if (marker == 0xD8) fail("corrupt JPEG header (two start-of-image markers)");
    if (marker == 0xD9) fail("corrupt JPEG header (end of image before any image data)");
    const std::uint16_t length = r.be16(pos);
    if (length < 2) fail("corrupt JPEG header (marker segment length < 2)");
    const std::size_t seg = pos + 2;
    const std::size_t seg_len = length - 2u;
    r.need(seg, seg_len);
    const bool is_sof =
        marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
    if (is_sof) {
      if (have_sof) fail("corrupt JPEG header (two frame headers)");
      if (marker == 0xC3 || marker == 0xC7 || marker == 0xCB || marker == 0xCF) {
        fail("lossless JPEG is not supported (libjpeg-turbo 2.1 cannot decode it)");
      }
      if (marker == 0xC5 || marker == 0xC6 || marker == 0xCD || marker == 0xCE) {
        fail("hierarchical JPEG is not supported");
      }
      if (seg_len < 6) fail("truncated JPEG header (frame header)");
      const int precision = r.u8(seg);
      const int height = r.be16(seg + 1);
      const int width = r.be16(seg + 3);
      const int components = r.u8(seg + 5);
      if (precision != 8) {
        fail("JPEG with " + std::to_string(precision) + "-bit samples is not supported");
      }
      if (height == 0) {
        fail("corrupt JPEG header (height 0; DNL-defined heights are not supported)");
      }
      check_size("JPEG", width, height);
      if (components != 1 && components != 3 && components != 4) {
        fail("JPEG with " + std::to_string(components) + " colour components is not supported");
      }
      if (seg_len < 6 + 3u * components) fail("truncated JPEG header (frame header)");
      layout.stored_width = width;
      layout.stored_height = height;
      layout.components = components;
      have_sof = true;
    } else if (marker == 0xE1 && !have_exif && seg_len >= 6 &&
               std::memcmp(bytes.data() + seg, "Exif\0\0", 6) == 0) {
      // Only the first Exif APP1 counts, as in OpenCV and browsers.
      layout.header.orientation = parse_exif_orientation(bytes.subspan(seg + 6, seg_len - 6));
      have_exif = true;
    } else if (marker == 0xDA) {
      if (!have_sof) fail("corrupt JPEG header (start of scan before frame header)");
      layout.sos_offset = pos - 2;
      break;
    }
    pos = seg + seg_len;
  }
  ImageHeader& h = layout.header;
  const bool swap = h.orientation >= 5;
  h.width = swap ? layout.stored_height : layout.stored_width;
  h.height = swap ? layout.stored_width : layout.stored_height;
  h.channels = layout.components;
  h.bit_depth = 8;
  return layout;
}

// In entropy-coded data FF is always followed by 00 or D0-D7, so FF D9 after the first SOS is the
// end-of-image marker. The search runs back from the end to the SOS (not just over the last few
// KB) so files with long trailers after the EOI (e.g. motion photos) are still accepted; it only
// walks far on files that have a trailer or are truncated.
bool has_eoi_after(std::span<const std::uint8_t> bytes, std::size_t sos_offset) {
  for (std::size_t i = bytes.size(); i >= sos_offset + 4; --i) {
    if (bytes[i - 1] == 0xD9 && bytes[i - 2] == 0xFF) return true;
  }
  return false;
}

struct JpegErrorManager {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX + 64];
};

[[noreturn]] void jpeg_fail(j_common_ptr cinfo, const char* what) {
  auto* err = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  char text[JMSG_LENGTH_MAX];
  (*cinfo->err->format_message)(cinfo, text);
  std::snprintf(err->message, sizeof err->message, "%s (libjpeg: %s)", what, text);
  std::longjmp(err->jump, 1);
}

void on_jpeg_error(j_common_ptr cinfo) { jpeg_fail(cinfo, "corrupt or unsupported JPEG data"); }

// libjpeg reports damaged data as warnings and fills the gaps with grey; such pixels must not
// reach training, so a warning about the data aborts the decode. Warnings about metadata, and
// stray bytes between markers (common in camera files, the pixels are intact), are ignored.
void on_jpeg_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  switch (cinfo->err->msg_code) {
    case JWRN_ADOBE_XFORM:
    case JWRN_JFIF_MAJOR:
    case JWRN_BOGUS_ICC:
    case JWRN_EXTRANEOUS_DATA: return;
    default: jpeg_fail(cinfo, "truncated or corrupt JPEG data");
  }
}

void on_jpeg_output(j_common_ptr) {}  // libjpeg would print to stderr

// One libjpeg decode of a stored-coordinate window at 1/scale_denom. Everything with a destructor
// lives in the caller: longjmp must not skip destructors.
struct JpegPass {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  int scale_denom = 1;
  bool cmyk = false;
  int channels = 3;             // of `out` (3 for CMYK, converted here)
  JDIMENSION expect_width = 0;  // scaled image size, to cross-check our header parse
  JDIMENSION expect_height = 0;
  JDIMENSION col_begin = 0;  // requested scaled window [col_begin, col_end)
  JDIMENSION col_end = 0;
  JDIMENSION row_begin = 0;  // rows [row_begin, row_end) are decoded
  JDIMENSION row_end = 0;
  std::uint8_t* cmyk_row = nullptr;  // expect_width * 4 bytes, for CMYK only
  JDIMENSION out_col = 0;            // actual window after iMCU alignment
  JDIMENSION out_width = 0;
  bool out_of_memory = false;
  char message[JMSG_LENGTH_MAX + 64] = {};
};

bool allocate(cv::Mat& m, int rows, int cols, int type) noexcept {
  try {
    m.create(rows, cols, type);
    return true;
  } catch (...) {
    return false;
  }
}

// Adobe CMYK JPEGs store inverted inks, so channel * K / 255 is the RGB value.
void cmyk_to_bgr(const std::uint8_t* cmyk, std::uint8_t* bgr, JDIMENSION width) {
  for (JDIMENSION i = 0; i < width; ++i, cmyk += 4, bgr += 3) {
    const unsigned k = cmyk[3];
    bgr[0] = static_cast<std::uint8_t>((cmyk[2] * k + 127) / 255);
    bgr[1] = static_cast<std::uint8_t>((cmyk[1] * k + 127) / 255);
    bgr[2] = static_cast<std::uint8_t>((cmyk[0] * k + 127) / 255);
  }
}

bool run_jpeg_pass(JpegPass& p, cv::Mat& out) {
  jpeg_decompress_struct cinfo{};
  JpegErrorManager err;
  cinfo.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = on_jpeg_error;
  err.pub.emit_message = on_jpeg_message;
  err.pub.output_message = on_jpeg_output;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    std::memcpy(p.message, err.message, sizeof p.message);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, p.data, static_cast<unsigned long>(p.size));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = p.cmyk ? JCS_CMYK : p.channels == 1 ? JCS_GRAYSCALE : JCS_EXT_BGR;
  cinfo.scale_num = 1;
  cinfo.scale_denom = static_cast<unsigned>(p.scale_denom);
  cinfo.dct_method = JDCT_ISLOW;
  jpeg_start_decompress(&cinfo);
  if (cinfo.output_width != p.expect_width || cinfo.output_height != p.expect_height) {
    std::snprintf(p.message, sizeof p.message, "corrupt JPEG header (inconsistent image size)");
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  JDIMENSION col = 0;
  JDIMENSION width = cinfo.output_width;
  if (p.col_begin > 0 || p.col_end < cinfo.output_width) {
    col = p.col_begin;
    JDIMENSION end = p.col_end;
    // Fancy chroma upsampling treats the window's sides as image edges; one more pixel of
    // context on each side keeps the requested columns identical to a full decode.
    if (cinfo.max_h_samp_factor > 1) {
      if (col > 0) --col;
      if (end < cinfo.output_width) ++end;
    }
    width = end - col;
    jpeg_crop_scanline(&cinfo, &col, &width);
  }
  p.out_col = col;
  p.out_width = width;
  const int rows = static_cast<int>(p.row_end - p.row_begin);
  if (!allocate(out, rows, static_cast<int>(width), CV_8UC(p.channels))) {
    p.out_of_memory = true;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  if (p.row_begin > 0) jpeg_skip_scanlines(&cinfo, p.row_begin);
  constexpr JDIMENSION kBatch = 16;
  JSAMPROW row_pointers[kBatch];
  while (cinfo.output_scanline < p.row_end) {
    const JDIMENSION first = cinfo.output_scanline;
    JDIMENSION got = 0;
    if (p.cmyk) {
      row_pointers[0] = p.cmyk_row;
      got = jpeg_read_scanlines(&cinfo, row_pointers, 1);
      if (got == 1) {
        cmyk_to_bgr(p.cmyk_row, out.ptr<std::uint8_t>(static_cast<int>(first - p.row_begin)),
                    width);
      }
    } else {
      const JDIMENSION want = std::min(kBatch, p.row_end - first);
      for (JDIMENSION i = 0; i < want; ++i) {
        row_pointers[i] = out.ptr<std::uint8_t>(static_cast<int>(first - p.row_begin + i));
      }
      got = jpeg_read_scanlines(&cinfo, row_pointers, want);
    }
    if (got == 0) {
      std::snprintf(p.message, sizeof p.message,
                    "truncated or corrupt JPEG data (no rows decoded)");
      jpeg_destroy_decompress(&cinfo);
      return false;
    }
  }
  // Destroying aborts the decompression: the rows below the window are never decoded.
  jpeg_destroy_decompress(&cinfo);
  return true;
}

// Maps a rectangle of the displayed (oriented) image to the stored image of size sw x sh.
cv::Rect displayed_to_stored(const cv::Rect& r, int orientation, int sw, int sh) {
  const int x1 = r.x + r.width;
  const int y1 = r.y + r.height;
  switch (orientation) {
    case 2: return {sw - x1, r.y, r.width, r.height};
    case 3: return {sw - x1, sh - y1, r.width, r.height};
    case 4: return {r.x, sh - y1, r.width, r.height};
    case 5: return {r.y, r.x, r.height, r.width};
    case 6: return {r.y, sh - x1, r.height, r.width};
    case 7: return {sw - y1, sh - x1, r.height, r.width};
    case 8: return {sw - y1, r.x, r.height, r.width};
    default: return r;
  }
}

// Inverse of displayed_to_stored: orientations 6 and 8 undo each other, the rest undo themselves.
cv::Rect stored_to_displayed(const cv::Rect& r, int orientation, int sw, int sh) {
  const int inverse = orientation == 6 ? 8 : orientation == 8 ? 6 : orientation;
  return orientation >= 5 ? displayed_to_stored(r, inverse, sh, sw)
                          : displayed_to_stored(r, inverse, sw, sh);
}

// Same operations as OpenCV's EXIF handling in imread, so both paths agree.
cv::Mat apply_orientation(const cv::Mat& m, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2: cv::flip(m, out, 1); break;
    case 3: cv::rotate(m, out, cv::ROTATE_180); break;
    case 4: cv::flip(m, out, 0); break;
    case 5: cv::transpose(m, out); break;
    case 6: cv::rotate(m, out, cv::ROTATE_90_CLOCKWISE); break;
    case 7: {
      cv::Mat t;
      cv::transpose(m, t);
      cv::rotate(t, out, cv::ROTATE_180);
      break;
    }
    case 8: cv::rotate(m, out, cv::ROTATE_90_COUNTERCLOCKWISE); break;
    default: return m;
  }
  return out;
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

DecodedImage decode_jpeg(std::span<const std::uint8_t> bytes, const JpegLayout& layout,
                         const cv::Rect& region, const DecodeOptions& options) {
  if (!has_eoi_after(bytes, layout.sos_offset)) fail("truncated JPEG: no end-of-image marker");
  const int sw = layout.stored_width;
  const int sh = layout.stored_height;
  const int orientation = layout.header.orientation;
  const int d = options.scale_denom;
  // Other orientations decode the matching stored window and turn only that.
  const cv::Rect stored = displayed_to_stored(region, orientation, sw, sh);
  const int scaled_w = ceil_div(sw, d);
  const int scaled_h = ceil_div(sh, d);

  JpegPass pass;
  pass.data = bytes.data();
  pass.size = bytes.size();
  pass.scale_denom = d;
  pass.cmyk = layout.components == 4;
  pass.channels = pass.cmyk ? 3 : options.channels;
  pass.expect_width = static_cast<JDIMENSION>(scaled_w);
  pass.expect_height = static_cast<JDIMENSION>(scaled_h);
  pass.col_begin = static_cast<JDIMENSION>(stored.x / d);
  pass.col_end = static_cast<JDIMENSION>(std::min(ceil_div(stored.x + stored.width, d), scaled_w));
  pass.row_begin = static_cast<JDIMENSION>(stored.y / d);
  pass.row_end = static_cast<JDIMENSION>(std::min(ceil_div(stored.y + stored.height, d), scaled_h));
  std::vector<std::uint8_t> cmyk_row(pass.cmyk ? static_cast<std::size_t>(scaled_w) * 4 : 0);
  pass.cmyk_row = cmyk_row.data();

  cv::Mat decoded;
  if (!run_jpeg_pass(pass, decoded)) {
    if (pass.out_of_memory) throw std::bad_alloc();
    fail(pass.message);
  }

  const int x0 = static_cast<int>(pass.out_col) * d;
  const int y0 = static_cast<int>(pass.row_begin) * d;
  const cv::Rect actual(x0, y0,
                        std::min(static_cast<int>(pass.out_col + pass.out_width) * d, sw) - x0,
                        std::min(static_cast<int>(pass.row_end) * d, sh) - y0);
  DecodedImage result;
  result.image = apply_orientation(decoded, orientation);
  if (pass.cmyk && options.channels == 1) {
    cv::Mat grey;
    cv::cvtColor(result.image, grey, cv::COLOR_BGR2GRAY);
    result.image = grey;
  }
  result.region = stored_to_displayed(actual, orientation, sw, sh);
  result.scale_denom = d;
  result.header = layout.header;
  return result;
}

// ---------------------------------------------------------------------------------------------
// Other formats: header parsers

ImageHeader parse_png(std::span<const std::uint8_t> bytes) {
  const Reader r(bytes, "PNG");
  r.need(0, 33);
  if (r.be32(8) != 13 || !r.matches(12, "IHDR")) {
    fail("corrupt PNG header (IHDR is not the first chunk)");
  }
  const std::uint32_t crc = static_cast<std::uint32_t>(crc32(0L, bytes.data() + 12, 17));
  if (crc != r.be32(29)) fail("corrupt PNG header (IHDR checksum mismatch)");
  const std::int64_t width = r.be32(16);
  const std::int64_t height = r.be32(20);
  const int depth = r.u8(24);
  const int colour = r.u8(25);
  check_size("PNG", width, height);
  bool valid = false;
  int channels = 0;
  switch (colour) {
    case 0:
      valid = depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16;
      channels = 1;
      break;
    case 2:
      valid = depth == 8 || depth == 16;
      channels = 3;
      break;
    case 3:
      valid = depth == 1 || depth == 2 || depth == 4 || depth == 8;
      channels = 3;
      break;
    case 4:
      valid = depth == 8 || depth == 16;
      channels = 2;
      break;
    case 6:
      valid = depth == 8 || depth == 16;
      channels = 4;
      break;
    default: break;
  }
  if (!valid || r.u8(26) != 0 || r.u8(27) != 0 || r.u8(28) > 1) {
    fail("corrupt PNG header (colour type " + std::to_string(colour) + ", bit depth " +
         std::to_string(depth) + ")");
  }
  ImageHeader h;
  h.format = "png";
  h.width = static_cast<int>(width);
  h.height = static_cast<int>(height);
  h.channels = channels;
  h.bit_depth = depth == 16 ? 16 : 8;
  return h;
}

ImageHeader parse_bmp(std::span<const std::uint8_t> bytes) {
  const Reader r(bytes, "BMP");
  const std::uint32_t dib = r.le32(14);
  std::int64_t width = 0;
  std::int64_t height = 0;
  int bits = 0;
  if (dib == 12) {  // OS/2 BITMAPCOREHEADER: 16-bit unsigned sizes
    width = r.le16(18);
    height = r.le16(20);
    bits = r.le16(24);
  } else if (dib >= 16 && dib <= 124) {
    width = static_cast<std::int32_t>(r.le32(18));
    height = static_cast<std::int32_t>(r.le32(22));
    bits = r.le16(28);
  } else {
    fail("corrupt BMP header (info header size " + std::to_string(dib) + ")");
  }
  if (height < 0) height = -height;  // top-down bitmap
  check_size("BMP", width, height);
  if (bits != 1 && bits != 4 && bits != 8 && bits != 16 && bits != 24 && bits != 32) {
    fail("unsupported BMP bit count " + std::to_string(bits));
  }
  ImageHeader h;
  h.format = "bmp";
  h.width = static_cast<int>(width);
  h.height = static_cast<int>(height);
  h.channels = bits == 32 ? 4 : 3;
  h.bit_depth = 8;
  return h;
}

ImageHeader parse_webp(std::span<const std::uint8_t> bytes) {
  const Reader r(bytes, "WebP");
  ImageHeader h;
  h.format = "webp";
  h.bit_depth = 8;
  std::int64_t width = 0;
  std::int64_t height = 0;
  if (r.matches(12, "VP8 ")) {
    r.need(20, 10);
    if ((r.u8(20) & 1) != 0 || r.u8(23) != 0x9D || r.u8(24) != 0x01 || r.u8(25) != 0x2A) {
      fail("corrupt WebP header (VP8 key frame)");
    }
    width = r.le16(26) & 0x3FFF;
    height = r.le16(28) & 0x3FFF;
    h.channels = 3;
  } else if (r.matches(12, "VP8L")) {
    if (r.u8(20) != 0x2F) fail("corrupt WebP header (VP8L signature)");
    const std::uint32_t bits = r.le32(21);
    if ((bits >> 29) != 0) fail("corrupt WebP header (VP8L version)");
    width = (bits & 0x3FFF) + 1;
    height = ((bits >> 14) & 0x3FFF) + 1;
    h.channels = (bits >> 28) & 1 ? 4 : 3;
  } else if (r.matches(12, "VP8X")) {
    r.need(20, 10);
    const std::uint8_t flags = r.u8(20);
    if (flags & 0x02) fail("animated WebP is not supported by OpenCV 4.6");
    width = (r.u8(24) | (r.u8(25) << 8) | (r.u8(26) << 16)) + 1;
    height = (r.u8(27) | (r.u8(28) << 8) | (r.u8(29) << 16)) + 1;
    h.channels = flags & 0x10 ? 4 : 3;
  } else {
    r.need(12, 4);
    fail("corrupt WebP header (unknown first chunk)");
  }
  check_size("WebP", width, height);
  h.width = static_cast<int>(width);
  h.height = static_cast<int>(height);
  return h;
}

ImageHeader parse_tiff(std::span<const std::uint8_t> bytes) {
  const Reader r(bytes, "TIFF");
  const bool little = r.matches(0, "II");
  const bool big_tiff = r.u16(2, little) == 43;
  // Classic TIFF: 2-byte entry count, 12-byte entries with a 4-byte value field. BigTIFF: 8-byte
  // count, 20-byte entries with an 8-byte value field.
  std::uint64_t ifd = 0;
  if (big_tiff) {
    if (r.u16(4, little) != 8) fail("corrupt TIFF header (BigTIFF offset size)");
    ifd = r.u64(8, little);
  } else {
    ifd = r.u32(4, little);
  }
  const std::uint64_t count = big_tiff ? r.u64(ifd, little) : r.u16(ifd, little);
  const std::uint64_t first = ifd + (big_tiff ? 8 : 2);
  const std::uint64_t entry_size = big_tiff ? 20 : 12;
  const std::uint64_t value_at = big_tiff ? 12 : 8;
  // An entry count the file cannot hold is corrupt; checked up front so the loop is bounded.
  if (count == 0 || count > (r.size() - std::min<std::uint64_t>(first, r.size())) / entry_size) {
    fail("corrupt TIFF header (first directory)");
  }
  auto value = [&](std::uint64_t entry) -> std::uint64_t {
    const std::uint16_t type = r.u16(entry + 2, little);
    if (type == 3) return r.u16(entry + value_at, little);
    if (type == 4) return r.u32(entry + value_at, little);
    if (type == 16) return r.u64(entry + value_at, little);
    fail("corrupt TIFF header (unexpected field type " + std::to_string(type) + ")");
  };
  std::int64_t width = -1;
  std::int64_t height = -1;
  std::uint64_t bits = 1;
  std::uint64_t samples = 1;
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t entry = first + i * entry_size;
    const std::uint16_t tag = r.u16(entry, little);
    if (tag == 256) {
      width = static_cast<std::int64_t>(std::min<std::uint64_t>(value(entry), kMaxSide + 1));
    } else if (tag == 257) {
      height = static_cast<std::int64_t>(std::min<std::uint64_t>(value(entry), kMaxSide + 1));
    } else if (tag == 258) {
      // One value per sample; all equal in practice. Values that do not fit the entry are stored
      // at an offset.
      const std::uint64_t n = big_tiff ? r.u64(entry + 4, little) : r.u32(entry + 4, little);
      if (r.u16(entry + 2, little) != 3 || n == 0) fail("corrupt TIFF header (bits per sample)");
      const std::uint64_t inline_limit = big_tiff ? 4 : 2;
      if (n <= inline_limit) {
        bits = r.u16(entry + value_at, little);
      } else {
        const std::uint64_t at =
            big_tiff ? r.u64(entry + value_at, little) : r.u32(entry + value_at, little);
        bits = r.u16(at, little);
      }
    } else if (tag == 277) {
      samples = value(entry);
    }
  }
  if (width < 0 || height < 0) fail("corrupt TIFF header (no image width or height)");
  check_size("TIFF", width, height);
  if (samples == 0 || samples > 16 || bits == 0 || bits > 64) {
    fail("corrupt TIFF header (" + std::to_string(samples) + " samples of " + std::to_string(bits) +
         " bits)");
  }
  ImageHeader h;
  h.format = "tiff";
  h.width = static_cast<int>(width);
  h.height = static_cast<int>(height);
  h.channels = static_cast<int>(samples);
  h.bit_depth = bits <= 8 ? 8 : static_cast<int>(bits);
  return h;
}

// Netpbm headers are ASCII: whitespace-separated decimal fields, '#' comments to end of line.
class PnmTokens {
 public:
  explicit PnmTokens(std::span<const std::uint8_t> bytes, std::size_t pos) : b_(bytes), pos_(pos) {}

  std::string_view next() {
    for (;;) {
      while (pos_ < b_.size() && is_space(b_[pos_])) ++pos_;
      if (pos_ < b_.size() && b_[pos_] == '#') {
        while (pos_ < b_.size() && b_[pos_] != '\n' && b_[pos_] != '\r') ++pos_;
        continue;
      }
      break;
    }
    const std::size_t start = pos_;
    while (pos_ < b_.size() && !is_space(b_[pos_]) && b_[pos_] != '#') ++pos_;
    if (start == pos_) fail("truncated PNM header");
    return {reinterpret_cast<const char*>(b_.data()) + start, pos_ - start};
  }

  std::int64_t number() {
    const std::string_view token = next();
    std::int64_t v = 0;
    for (const char c : token) {
      if (c < '0' || c > '9') fail("corrupt PNM header (expected a number)");
      v = v * 10 + (c - '0');
      if (v > kMaxSide * 64) fail("corrupt PNM header (number too large)");
    }
    return v;
  }

 private:
  static bool is_space(std::uint8_t c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  }
  std::span<const std::uint8_t> b_;
  std::size_t pos_;
};

ImageHeader parse_pnm(std::span<const std::uint8_t> bytes) {
  const char kind = static_cast<char>(bytes[1]);
  PnmTokens tokens(bytes, 2);
  std::int64_t width = 0;
  std::int64_t height = 0;
  std::int64_t maxval = 1;
  std::int64_t depth = 0;
  if (kind == '7') {  // PAM: "WIDTH n" ... "ENDHDR"
    for (int fields = 0;; ++fields) {
      if (fields > 64) fail("corrupt PAM header (no ENDHDR)");
      const std::string_view key = tokens.next();
      if (key == "ENDHDR") break;
      if (key == "WIDTH") {
        width = tokens.number();
      } else if (key == "HEIGHT") {
        height = tokens.number();
      } else if (key == "DEPTH") {
        depth = tokens.number();
      } else if (key == "MAXVAL") {
        maxval = tokens.number();
      } else if (key == "TUPLTYPE") {
        tokens.next();
      } else {
        fail("corrupt PAM header (unknown field)");
      }
    }
    if (depth < 1 || depth > 4) fail("corrupt PAM header (depth " + std::to_string(depth) + ")");
  } else {
    width = tokens.number();
    height = tokens.number();
    if (kind != '1' && kind != '4') maxval = tokens.number();
    depth = kind == '3' || kind == '6' ? 3 : 1;
  }
  check_size("PNM", width, height);
  if (maxval < 1 || maxval > 65535) {
    fail("corrupt PNM header (maximum value " + std::to_string(maxval) + ")");
  }
  ImageHeader h;
  h.format = "pnm";
  h.width = static_cast<int>(width);
  h.height = static_cast<int>(height);
  h.channels = static_cast<int>(depth);
  h.bit_depth = maxval > 255 ? 16 : 8;
  return h;
}

std::string first_bytes(std::span<const std::uint8_t> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  for (std::size_t i = 0; i < std::min<std::size_t>(bytes.size(), 8); ++i) {
    if (i) text += ' ';
    text += kHex[bytes[i] >> 4];
    text += kHex[bytes[i] & 15];
  }
  return text;
}

// Dispatch on the magic number. `jpeg` receives the JPEG layout when the data is a JPEG.
ImageHeader probe(std::span<const std::uint8_t> bytes, JpegLayout* jpeg) {
  const Reader r(bytes, "image");
  if (bytes.empty()) fail("empty file (0 bytes)");
  if (r.has(0, 3) && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF) {
    JpegLayout layout = parse_jpeg(bytes);
    if (jpeg) *jpeg = layout;
    return layout.header;
  }
  if (r.matches(0, "\x89PNG\r\n\x1a\n")) return parse_png(bytes);
  if (r.matches(0, "GIF87a") || r.matches(0, "GIF89a")) {
    fail("GIF is not supported by OpenCV 4.6; convert the file to PNG");
  }
  if (r.matches(0, "BM")) return parse_bmp(bytes);
  if (r.matches(0, "RIFF") && r.matches(8, "WEBP")) return parse_webp(bytes);
  if (r.matches(0, std::string_view("II*\0", 4)) || r.matches(0, std::string_view("MM\0*", 4)) ||
      r.matches(0, std::string_view("II+\0", 4)) || r.matches(0, std::string_view("MM\0+", 4))) {
    return parse_tiff(bytes);
  }
  if (r.has(0, 3) && bytes[0] == 'P' && bytes[1] >= '1' && bytes[1] <= '7' &&
      (bytes[2] == ' ' || bytes[2] == '\t' || bytes[2] == '\n' || bytes[2] == '\r' ||
       bytes[2] == '#')) {
    return parse_pnm(bytes);
  }
  if (r.matches(4, "ftypheic") || r.matches(4, "ftypheix") || r.matches(4, "ftypmif1") ||
      r.matches(4, "ftypavif")) {
    fail("HEIF/AVIF is not supported by OpenCV 4.6; convert the file to JPEG or PNG");
  }
  fail("unknown image format (first bytes " + first_bytes(bytes) + ")");
}

// ---------------------------------------------------------------------------------------------
// Other formats: decode through OpenCV

cv::Mat to_channels(const cv::Mat& m, int channels) {
  const int have = m.channels();
  if (have == channels) return m;
  cv::Mat out;
  if (have == 2) {  // grey + alpha
    cv::extractChannel(m, out, 0);
    if (channels == 3) cv::cvtColor(out, out, cv::COLOR_GRAY2BGR);
  } else if (channels == 1) {
    cv::cvtColor(m, out, have == 4 ? cv::COLOR_BGRA2GRAY : cv::COLOR_BGR2GRAY);
  } else if (have == 1) {
    cv::cvtColor(m, out, cv::COLOR_GRAY2BGR);
  } else if (have == 4) {
    cv::cvtColor(m, out, cv::COLOR_BGRA2BGR);
  } else {
    fail("unsupported channel count " + std::to_string(have));
  }
  return out;
}

DecodedImage decode_with_opencv(std::span<const std::uint8_t> bytes, ImageHeader header,
                                const cv::Rect& requested, const DecodeOptions& options) {
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    fail("file too large for OpenCV (over 2 GB)");
  }
  // A Mat header over the caller's bytes: OpenCV's decoders for these formats read from memory.
  const cv::Mat buffer(1, static_cast<int>(bytes.size()), CV_8UC1,
                       const_cast<std::uint8_t*>(bytes.data()));
  cv::Mat decoded;
  try {
    decoded = cv::imdecode(buffer, cv::IMREAD_ANYDEPTH | cv::IMREAD_ANYCOLOR);
  } catch (const cv::Exception& e) {
    fail("OpenCV could not decode the " + header.format + " data: " + e.msg);
  }
  if (decoded.empty()) fail("OpenCV could not decode the " + header.format + " data");
  cv::Rect region = requested;
  if (decoded.cols != header.width || decoded.rows != header.height) {
    // OpenCV applied an orientation tag the probe does not read (e.g. in a TIFF): trust it.
    if (decoded.cols != header.height || decoded.rows != header.width) {
      fail("OpenCV decoded " + std::to_string(decoded.cols) + "x" + std::to_string(decoded.rows) +
           " pixels but the " + header.format + " header says " + std::to_string(header.width) +
           "x" + std::to_string(header.height));
    }
    std::swap(header.width, header.height);
    if (options.region.empty()) {
      region = cv::Rect(0, 0, header.width, header.height);
    } else if ((region & cv::Rect(0, 0, header.width, header.height)) != region) {
      throw ConfigError("decode: region does not fit the image after its orientation");
    }
  }
  const int depth = decoded.depth();
  if (depth != CV_8U && depth != CV_16U) {
    fail("unsupported sample type in the " + header.format + " data (only 8 and 16 bits)");
  }
  // Cut first so the conversions below touch only the kept pixels; fewer channels before the
  // depth conversion, more after it.
  cv::Mat image = decoded(region);
  if (image.channels() > options.channels) image = to_channels(image, options.channels);
  if (depth == CV_16U) {
    cv::Mat eight;
    image.convertTo(eight, CV_8U, 255.0 / 65535.0);
    image = eight;
  }
  if (image.channels() != options.channels) image = to_channels(image, options.channels);
  const int d = options.scale_denom;
  if (d > 1) {
    cv::Mat small;
    cv::resize(image, small, cv::Size(ceil_div(region.width, d), ceil_div(region.height, d)), 0, 0,
               cv::INTER_AREA);
    image = small;
  }
  // A view into the whole decode would keep it alive and be non-continuous.
  if (image.datastart == decoded.datastart && region.size() != decoded.size()) {
    image = image.clone();
  }
  DecodedImage result;
  result.image = image;
  result.region = region;
  result.scale_denom = d;
  result.header = std::move(header);
  return result;
}

void check_options(const DecodeOptions& options) {
  if (options.channels != 1 && options.channels != 3) {
    throw ConfigError("decode: channels must be 1 or 3, got " + std::to_string(options.channels));
  }
  const int d = options.scale_denom;
  if (d != 1 && d != 2 && d != 4 && d != 8) {
    throw ConfigError("decode: scale_denom must be 1, 2, 4 or 8, got " + std::to_string(d));
  }
  if (options.max_pixels <= 0) {
    throw ConfigError("decode: max_pixels must be positive, got " +
                      std::to_string(options.max_pixels));
  }
  if (options.region.width < 0 || options.region.height < 0) {
    throw ConfigError("decode: region has a negative size");
  }
}

cv::Rect resolve_region(const cv::Rect& requested, const ImageHeader& h) {
  if (requested.empty()) return {0, 0, h.width, h.height};
  const std::int64_t x1 = static_cast<std::int64_t>(requested.x) + requested.width;
  const std::int64_t y1 = static_cast<std::int64_t>(requested.y) + requested.height;
  if (requested.x < 0 || requested.y < 0 || x1 > h.width || y1 > h.height) {
    throw ConfigError("decode: region (x " + std::to_string(requested.x) + ", y " +
                      std::to_string(requested.y) + ", " + std::to_string(requested.width) + "x" +
                      std::to_string(requested.height) + ") is not inside the " +
                      std::to_string(h.width) + "x" + std::to_string(h.height) + " image");
  }
  return requested;
}

}  // namespace

ImageHeader probe_image(std::span<const std::uint8_t> bytes) { return probe(bytes, nullptr); }

DecodedImage decode_image(std::span<const std::uint8_t> bytes, const DecodeOptions& options) {
  check_options(options);
  JpegLayout layout;
  ImageHeader header = probe(bytes, &layout);
  const std::int64_t pixels = static_cast<std::int64_t>(header.width) * header.height;
  if (pixels > options.max_pixels) {
    fail("image is " + std::to_string(header.width) + "x" + std::to_string(header.height) + " = " +
         std::to_string(pixels) + " pixels, over the limit of " +
         std::to_string(options.max_pixels) + " (--max-pixels raises the limit)");
  }
  const cv::Rect region = resolve_region(options.region, header);
  if (header.format == "jpeg") return decode_jpeg(bytes, layout, region, options);
  return decode_with_opencv(bytes, std::move(header), region, options);
}

std::vector<std::uint8_t> read_file(const std::filesystem::path& path) {
  const auto error_text = [&](const char* what) {
    return std::string(what) + " " + path.string() + ": " + std::generic_category().message(errno);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(error_text("cannot open"));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw IoError(error_text("cannot stat"));
  std::vector<std::uint8_t> data(st.st_size > 0 ? static_cast<std::size_t>(st.st_size) : 0);
  std::size_t filled = 0;
  const auto read_some = [&](std::uint8_t* to, std::size_t count) {
    for (;;) {
      const ssize_t n = ::read(fd, to, count);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno != EINTR) throw IoError(error_text("cannot read"));
    }
  };
  for (;;) {
    if (filled < data.size()) {
      const std::size_t n = read_some(data.data() + filled, data.size() - filled);
      if (n == 0) break;
      filled += n;
      continue;
    }
    // Reached the size fstat gave: usually EOF. Files without a size (pipes, /proc) or that grew
    // continue through a small buffer, so the common case never reallocates.
    std::uint8_t extra[1 << 14];
    const std::size_t n = read_some(extra, sizeof extra);
    if (n == 0) break;
    data.insert(data.end(), extra, extra + n);
    filled += n;
  }
  data.resize(filled);
  return data;
}

DecodedImage decode_file(const std::filesystem::path& path, const DecodeOptions& options) {
  const std::vector<std::uint8_t> bytes = read_file(path);
  try {
    return decode_image(bytes, options);
  } catch (const DataError& e) {
    throw DataError(path.string(), e.reason());
  }
}

}  // namespace augflow::augment
