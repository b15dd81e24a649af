// Tests for augment/decode: header probing, JPEG region/scaled decode, EXIF orientation, error
// handling. Every image is generated here with OpenCV (or libjpeg for CMYK).
#include <gtest/gtest.h>
#include <jpeglib.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "augment/decode.hpp"
#include "common/error.hpp"

namespace fs = std::filesystem;
using augflow::ConfigError;
using augflow::DataError;
using augflow::IoError;
using augflow::augment::decode_file;
using augflow::augment::decode_image;
using augflow::augment::DecodedImage;
using augflow::augment::DecodeOptions;
using augflow::augment::probe_image;
using augflow::augment::read_file;
using Bytes = std::vector<std::uint8_t>;

namespace {

// Smooth gradients plus a little deterministic texture: realistic enough for JPEG, and
// asymmetric so flips and rotations are visible.
cv::Mat make_image(int width, int height, int type = CV_8UC3, unsigned seed = 1) {
  cv::Mat m(height, width, type);
  std::mt19937 rng(seed);
  const int channels = m.channels();
  const bool wide = m.depth() == CV_16U;
  for (int y = 0; y < height; ++y) {
    for (int x = 0; x < width; ++x) {
      for (int c = 0; c < channels; ++c) {
        const double v = 128 + 90 * std::sin(0.05 * x * (c + 1) + 0.031 * y) +
                         30.0 * y / std::max(height, 1) + static_cast<int>(rng() % 21) - 10;
        const double clamped = std::clamp(v, 0.0, 255.0);
        if (wide) {
          m.ptr<std::uint16_t>(y)[x * channels + c] = static_cast<std::uint16_t>(clamped * 257);
        } else {
          m.ptr<std::uint8_t>(y)[x * channels + c] = static_cast<std::uint8_t>(clamped);
        }
      }
    }
  }
  return m;
}

Bytes encode(const std::string& ext, const cv::Mat& m, const std::vector<int>& params = {}) {
  Bytes out;
  if (!cv::imencode(ext, m, out, params)) throw std::runtime_error("imencode failed for " + ext);
  return out;
}

double max_diff(const cv::Mat& a, const cv::Mat& b) { return cv::norm(a, b, cv::NORM_INF); }

double mean_diff(const cv::Mat& a, const cv::Mat& b) {
  cv::Mat d;
  cv::absdiff(a, b, d);
  const cv::Scalar s = cv::mean(d);
  return (s[0] + s[1] + s[2] + s[3]) / a.channels();
}

bool contains(const cv::Rect& outer, const cv::Rect& inner) { return (outer & inner) == inner; }

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// A JPEG with an APP1 Exif segment carrying only the orientation tag, inserted after SOI.
Bytes with_exif_orientation(const Bytes& jpeg, int orientation, bool little_endian) {
  std::vector<std::uint8_t> tiff;
  auto put16 = [&](unsigned v) {
    if (little_endian) {
      tiff.push_back(v & 0xFF);
      tiff.push_back(v >> 8);
    } else {
      tiff.push_back(v >> 8);
      tiff.push_back(v & 0xFF);
    }
  };
  auto put32 = [&](unsigned v) {
    if (little_endian) {
      put16(v & 0xFFFF);
      put16(v >> 16);
    } else {
      put16(v >> 16);
      put16(v & 0xFFFF);
    }
  };
  tiff.push_back(little_endian ? 'I' : 'M');
  tiff.push_back(little_endian ? 'I' : 'M');
  put16(42);
  put32(8);       // IFD0 right after the header
  put16(1);       // one entry
  put16(0x0112);  // Orientation
  put16(3);       // SHORT
  put32(1);       // count
  put16(static_cast<unsigned>(orientation));
  put16(0);  // value field padding
  put32(0);  // no next IFD
  Bytes segment = {0xFF, 0xE1};
  const std::size_t length = 2 + 6 + tiff.size();
  segment.push_back(static_cast<std::uint8_t>(length >> 8));
  segment.push_back(static_cast<std::uint8_t>(length & 0xFF));
  for (char c : std::string("Exif\0\0", 6)) segment.push_back(static_cast<std::uint8_t>(c));
  segment.insert(segment.end(), tiff.begin(), tiff.end());
  Bytes out(jpeg.size() + segment.size());
  std::copy(jpeg.begin(), jpeg.begin() + 2, out.begin());
  std::copy(segment.begin(), segment.end(), out.begin() + 2);
  std::copy(jpeg.begin() + 2, jpeg.end(),
            out.begin() + 2 + static_cast<std::ptrdiff_t>(segment.size()));
  return out;
}

// An IHDR-only PNG (no pixel data) with a valid checksum.
Bytes png_header(std::uint32_t width, std::uint32_t height, int depth = 8, int colour = 2) {
  Bytes b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (std::uint32_t v : {width, height}) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(v >> s));
  }
  b.insert(b.end(), {static_cast<std::uint8_t>(depth), static_cast<std::uint8_t>(colour), 0, 0, 0});
  const auto crc = static_cast<std::uint32_t>(crc32(0L, b.data() + 12, 17));
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(crc >> s));
  return b;
}

// libjpeg directly, for what OpenCV 4.6's encoder cannot write: chroma subsampling other than
// 4:2:0, and CMYK as Photoshop writes it (Adobe marker, inverted inks). `m` is BGR or CMYK.
Bytes libjpeg_encode(const cv::Mat& m, int h_samp, int v_samp, int quality = 90) {
  jpeg_compress_struct cinfo{};
  jpeg_error_mgr err{};
  cinfo.err = jpeg_std_error(&err);
  jpeg_create_compress(&cinfo);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&cinfo, &buffer, &size);
  cinfo.image_width = static_cast<JDIMENSION>(m.cols);
  cinfo.image_height = static_cast<JDIMENSION>(m.rows);
  cinfo.input_components = m.channels();
  cinfo.in_color_space = m.channels() == 4 ? JCS_CMYK : JCS_EXT_BGR;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  cinfo.comp_info[0].h_samp_factor = h_samp;
  cinfo.comp_info[0].v_samp_factor = v_samp;
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(m.ptr<std::uint8_t>(static_cast<int>(cinfo.next_scanline)));
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  Bytes out(buffer, buffer + size);
  std::free(buffer);
  return out;
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() /
            ("augflow_test_decode_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path write(const std::string& name, const Bytes& bytes) const {
    const fs::path p = path_ / name;
    std::ofstream(p, std::ios::binary)
        .write(reinterpret_cast<const char*>(bytes.data()),
               static_cast<std::streamsize>(bytes.size()));
    return p;
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

DecodeOptions opts(int channels = 3, cv::Rect region = {}, int scale = 1) {
  DecodeOptions o;
  o.channels = channels;
  o.region = region;
  o.scale_denom = scale;
  return o;
}

template <typename F>
std::string data_error_reason(F&& f) {
  try {
    f();
  } catch (const DataError& e) {
    return e.reason();
  }
  return "<no DataError>";
}

struct JpegVariant {
  const char* name;
  std::vector<int> params;  // for cv::imencode; ignored when h_samp > 0
  bool grey = false;
  int h_samp = 0;  // > 0: written by libjpeg_encode with these luma sampling factors
  int v_samp = 0;
};

std::vector<JpegVariant> jpeg_variants() {
  return {
      {"420", {cv::IMWRITE_JPEG_QUALITY, 90}},
      {"422", {}, false, 2, 1},
      {"440", {}, false, 1, 2},
      {"444", {}, false, 1, 1},
      {"411", {}, false, 4, 1},
      {"progressive", {cv::IMWRITE_JPEG_QUALITY, 85, cv::IMWRITE_JPEG_PROGRESSIVE, 1}},
      {"restart", {cv::IMWRITE_JPEG_QUALITY, 85, cv::IMWRITE_JPEG_RST_INTERVAL, 3}},
      {"grey", {cv::IMWRITE_JPEG_QUALITY, 90}, true},
  };
}

Bytes encode_variant(const JpegVariant& v, const cv::Mat& colour, const cv::Mat& grey) {
  if (v.h_samp > 0) return libjpeg_encode(colour, v.h_samp, v.v_samp);
  return encode(".jpg", v.grey ? grey : colour, v.params);
}

}  // namespace

TEST(Decode, JpegFullDecodeMatchesOpenCV) {
  const cv::Mat src = make_image(317, 211);
  const cv::Mat grey = make_image(317, 211, CV_8UC1);
  for (const JpegVariant& v : jpeg_variants()) {
    const Bytes jpeg = encode_variant(v, src, grey);
    for (int channels : {3, 1}) {
      const cv::Mat reference =
          cv::imdecode(jpeg, channels == 3 ? cv::IMREAD_COLOR : cv::IMREAD_GRAYSCALE);
      const DecodedImage d = decode_image(jpeg, opts(channels));
      ASSERT_EQ(d.image.type(), CV_8UC(channels)) << v.name;
      ASSERT_EQ(d.image.size(), reference.size()) << v.name;
      EXPECT_EQ(d.region, cv::Rect(0, 0, 317, 211));
      EXPECT_LT(mean_diff(d.image, reference), 1.0) << v.name << " channels " << channels;
      EXPECT_LE(max_diff(d.image, reference), 2.0) << v.name << " channels " << channels;
      EXPECT_EQ(d.header.format, "jpeg");
      EXPECT_EQ(d.header.channels, v.grey ? 1 : 3);
    }
  }
}

// The requested pixels must equal a full decode at the same scale (tolerance 0). Only the
// outermost column on each side of the reported region, where libjpeg's cropped chroma
// upsampling sees an artificial image edge, may differ (measured up to 26 levels on this
// synthetic image; allowed 64). The decoder widens the window by a pixel so those columns are
// never requested ones.
TEST(Decode, JpegRegionEqualsFullDecode) {
  const cv::Mat src = make_image(613, 419, CV_8UC3, 7);
  const cv::Mat grey = make_image(613, 419, CV_8UC1, 7);
  std::mt19937 rng(42);
  for (const JpegVariant& v : jpeg_variants()) {
    const Bytes jpeg = encode_variant(v, src, grey);
    for (int channels : {3, 1}) {
      for (int d : {1, 2, 4, 8}) {
        const DecodedImage full = decode_image(jpeg, opts(channels, {}, d));
        ASSERT_EQ(full.image.size(), cv::Size(ceil_div(613, d), ceil_div(419, d)));
        for (int trial = 0; trial < 12; ++trial) {
          const int w = 1 + static_cast<int>(rng() % 613);
          const int h = 1 + static_cast<int>(rng() % 419);
          const cv::Rect want(static_cast<int>(rng() % (613 - w + 1)),
                              static_cast<int>(rng() % (419 - h + 1)), w, h);
          const DecodedImage part = decode_image(jpeg, opts(channels, want, d));
          const cv::Rect got = part.region;
          SCOPED_TRACE(std::string(v.name) + " channels " + std::to_string(channels) + " scale " +
                       std::to_string(d) + " want " + std::to_string(want.x) + "," +
                       std::to_string(want.y) + " " + std::to_string(want.width) + "x" +
                       std::to_string(want.height));
          ASSERT_TRUE(contains(got, want));
          ASSERT_TRUE(contains(cv::Rect(0, 0, 613, 419), got));
          ASSERT_EQ(got.x % d, 0);
          ASSERT_EQ(got.y % d, 0);
          ASSERT_EQ(part.image.size(), cv::Size(ceil_div(got.width, d), ceil_div(got.height, d)));
          ASSERT_EQ(part.scale_denom, d);
          const cv::Mat same =
              full.image(cv::Rect(got.x / d, got.y / d, part.image.cols, part.image.rows));
          const cv::Rect inner(want.x / d - got.x / d, want.y / d - got.y / d,
                               ceil_div(want.x + want.width, d) - want.x / d,
                               ceil_div(want.y + want.height, d) - want.y / d);
          const cv::Rect interior(1, 0, std::max(0, part.image.cols - 2), part.image.rows);
          const double inner_diff = max_diff(part.image(inner), same(inner));
          const double interior_diff = max_diff(part.image(interior), same(interior));
          const double edge_diff = max_diff(part.image, same);
          EXPECT_EQ(inner_diff, 0.0) << "max diff inside the requested region";
          EXPECT_EQ(interior_diff, 0.0) << "max diff inside the region but its outermost columns";
          EXPECT_LE(edge_diff, 64.0) << "max diff on the region's outermost columns";
        }
      }
    }
  }
}

TEST(Decode, ScaleDenomGivesDocumentedSize) {
  const Bytes jpeg = encode(".jpg", make_image(301, 203));
  const Bytes png = encode(".png", make_image(301, 203));
  for (const Bytes* bytes : {&jpeg, &png}) {
    for (int d : {1, 2, 4, 8}) {
      const DecodedImage img = decode_image(*bytes, opts(3, {}, d));
      EXPECT_EQ(img.image.size(), cv::Size(ceil_div(301, d), ceil_div(203, d))) << "scale " << d;
      EXPECT_EQ(img.region, cv::Rect(0, 0, 301, 203));
      EXPECT_EQ(img.scale_denom, d);
    }
  }
  // JPEG scaling is libjpeg's scaled IDCT: identical to OpenCV's IMREAD_REDUCED_* modes.
  const std::pair<int, int> reduced[] = {{2, cv::IMREAD_REDUCED_COLOR_2},
                                         {4, cv::IMREAD_REDUCED_COLOR_4},
                                         {8, cv::IMREAD_REDUCED_COLOR_8}};
  for (const auto& [d, flag] : reduced) {
    const cv::Mat reference = cv::imdecode(jpeg, flag);
    const cv::Mat scaled = decode_image(jpeg, opts(3, {}, d)).image;
    ASSERT_EQ(scaled.size(), reference.size());
    EXPECT_EQ(max_diff(scaled, reference), 0.0) << "scale " << d;
  }
}

TEST(Decode, BadOptionsAreConfigErrors) {
  const Bytes jpeg = encode(".jpg", make_image(64, 48));
  const Bytes png = encode(".png", make_image(64, 48));
  for (const Bytes* bytes : {&jpeg, &png}) {
    EXPECT_THROW(decode_image(*bytes, opts(2)), ConfigError);
    EXPECT_THROW(decode_image(*bytes, opts(3, {}, 3)), ConfigError);
    EXPECT_THROW(decode_image(*bytes, opts(3, {}, 16)), ConfigError);
    EXPECT_THROW(decode_image(*bytes, opts(3, {60, 0, 5, 5})), ConfigError);
    EXPECT_THROW(decode_image(*bytes, opts(3, {0, 40, 5, 9})), ConfigError);
    EXPECT_THROW(decode_image(*bytes, opts(3, {-1, 0, 5, 5})), ConfigError);
    EXPECT_THROW(decode_image(*bytes, opts(3, {0, 0, -5, 5})), ConfigError);
    EXPECT_NO_THROW(decode_image(*bytes, opts(3, {63, 47, 1, 1})));
  }
}

TEST(Decode, ExifOrientationMatchesOpenCV) {
  const Bytes plain =
      encode(".jpg", make_image(64, 40, CV_8UC3, 3), {cv::IMWRITE_JPEG_QUALITY, 95});
  const cv::Mat stored = decode_image(plain).image;
  for (bool little : {true, false}) {
    for (int o = 1; o <= 8; ++o) {
      SCOPED_TRACE("orientation " + std::to_string(o) + (little ? " II" : " MM"));
      const Bytes jpeg = with_exif_orientation(plain, o, little);
      const auto header = probe_image(jpeg);
      EXPECT_EQ(header.orientation, o);
      EXPECT_EQ(header.width, o >= 5 ? 40 : 64);
      EXPECT_EQ(header.height, o >= 5 ? 64 : 40);
      const DecodedImage d = decode_image(jpeg);
      const cv::Mat reference = cv::imdecode(jpeg, cv::IMREAD_COLOR);  // applies EXIF orientation
      ASSERT_EQ(d.image.size(), reference.size());
      EXPECT_EQ(max_diff(d.image, reference), 0.0);
      EXPECT_EQ(d.region, cv::Rect(0, 0, header.width, header.height));
      if (o == 6) {
        cv::Mat rotated;
        cv::rotate(stored, rotated, cv::ROTATE_90_CLOCKWISE);
        EXPECT_EQ(max_diff(d.image, rotated), 0.0);
      }
      // A region in displayed coordinates: same pixels as the oriented full decode.
      const cv::Rect want(o >= 5 ? 7 : 13, o >= 5 ? 21 : 9, 19, 11);
      const DecodedImage part = decode_image(jpeg, opts(3, want));
      ASSERT_TRUE(contains(part.region, want));
      ASSERT_TRUE(contains(cv::Rect(0, 0, header.width, header.height), part.region));
      ASSERT_EQ(part.image.size(), part.region.size());
      const cv::Rect inner(want.x - part.region.x, want.y - part.region.y, want.width, want.height);
      EXPECT_EQ(max_diff(part.image(inner), d.image(want)), 0.0);
      EXPECT_LE(max_diff(part.image, d.image(part.region)), 24.0);
      // Scaled: the oriented version of the scaled stored decode.
      const DecodedImage half = decode_image(jpeg, opts(3, {}, 2));
      const cv::Mat half_stored = decode_image(plain, opts(3, {}, 2)).image;
      ASSERT_EQ(half.image.size(), o >= 5 ? cv::Size(20, 32) : cv::Size(32, 20));
      if (o == 6) {
        cv::Mat rotated;
        cv::rotate(half_stored, rotated, cv::ROTATE_90_CLOCKWISE);
        EXPECT_EQ(max_diff(half.image, rotated), 0.0);
      }
    }
  }
}

// Regions and scales combined with every orientation. With sides that are multiples of the
// 16-pixel iMCU the scaled grids of the stored and displayed images coincide, so the window must
// equal the oriented full decode at the same scale, apart from its one-pixel border (see
// JpegRegionEqualsFullDecode). With other sides only the documented sizes are checked.
TEST(Decode, ExifOrientationWithRegionAndScale) {
  std::mt19937 rng(9);
  for (const cv::Size stored : {cv::Size(320, 240), cv::Size(317, 211)}) {
    const bool aligned = stored.width % 16 == 0 && stored.height % 16 == 0;
    const Bytes plain = encode(".jpg", make_image(stored.width, stored.height, CV_8UC3, 11));
    for (int o = 1; o <= 8; ++o) {
      const Bytes jpeg = with_exif_orientation(plain, o, o % 2 == 0);
      const int w = o >= 5 ? stored.height : stored.width;
      const int h = o >= 5 ? stored.width : stored.height;
      for (int d : {1, 2, 4, 8}) {
        const DecodedImage full = decode_image(jpeg, opts(3, {}, d));
        ASSERT_EQ(full.image.size(), cv::Size(ceil_div(w, d), ceil_div(h, d)));
        for (int trial = 0; trial < 6; ++trial) {
          const int rw = 1 + static_cast<int>(rng() % w);
          const int rh = 1 + static_cast<int>(rng() % h);
          const cv::Rect want(static_cast<int>(rng() % (w - rw + 1)),
                              static_cast<int>(rng() % (h - rh + 1)), rw, rh);
          const DecodedImage part = decode_image(jpeg, opts(3, want, d));
          const cv::Rect got = part.region;
          SCOPED_TRACE("orientation " + std::to_string(o) + " scale " + std::to_string(d) +
                       " stored " + std::to_string(stored.width) + "x" +
                       std::to_string(stored.height));
          ASSERT_TRUE(contains(got, want));
          ASSERT_TRUE(contains(cv::Rect(0, 0, w, h), got));
          ASSERT_EQ(part.image.size(), cv::Size(ceil_div(got.width, d), ceil_div(got.height, d)));
          if (!aligned) continue;
          ASSERT_EQ(got.x % d, 0);
          ASSERT_EQ(got.y % d, 0);
          const cv::Mat same =
              full.image(cv::Rect(got.x / d, got.y / d, part.image.cols, part.image.rows));
          const cv::Rect interior(1, 1, std::max(0, part.image.cols - 2),
                                  std::max(0, part.image.rows - 2));
          EXPECT_EQ(max_diff(part.image(interior), same(interior)), 0.0);
          EXPECT_LE(max_diff(part.image, same), 64.0);
        }
      }
    }
  }
}

TEST(Decode, TruncatedJpegIsDataError) {
  const cv::Mat src = make_image(320, 240);
  const cv::Mat grey = make_image(320, 240, CV_8UC1);
  for (const JpegVariant& v : jpeg_variants()) {
    const Bytes jpeg = encode_variant(v, src, grey);
    const Bytes half(jpeg.begin(), jpeg.begin() + static_cast<std::ptrdiff_t>(jpeg.size() / 2));
    EXPECT_THROW(decode_image(half), DataError) << v.name;
    // Only the top rows requested: libjpeg never reaches the cut, the EOI check must catch it.
    const std::string reason = data_error_reason([&] {
      decode_image(half, opts(3, {0, 0, 320, 16}));
    });
    EXPECT_NE(reason.find("truncated"), std::string::npos) << v.name << ": " << reason;
    const Bytes no_eoi(jpeg.begin(), jpeg.end() - 2);
    EXPECT_NE(data_error_reason([&] { decode_image(no_eoi); }).find("end-of-image"),
              std::string::npos);
    // Trailing bytes after the EOI are harmless.
    Bytes trailer = jpeg;
    trailer.insert(trailer.end(), 5000, 0);
    EXPECT_NO_THROW(decode_image(trailer)) << v.name;
  }
}

TEST(Decode, EmptyAndNonImageFilesAreDataErrors) {
  TempDir dir;
  EXPECT_THROW(probe_image({}), DataError);
  EXPECT_THROW(decode_image({}), DataError);
  const fs::path empty = dir.write("empty.jpg", {});
  try {
    decode_file(empty);
    FAIL() << "no DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), empty.string());
    EXPECT_NE(std::string(e.what()).find(empty.string()), std::string::npos);
  }
  const std::string text = "<html>this is not an image</html>\n";
  const fs::path fake = dir.write("fake.jpg", Bytes(text.begin(), text.end()));
  try {
    decode_file(fake);
    FAIL() << "no DataError";
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), fake.string());
    EXPECT_NE(e.reason().find("unknown image format"), std::string::npos) << e.reason();
    EXPECT_NE(e.reason().find("3c 68 74 6d"), std::string::npos) << e.reason();
  }
  // A JPEG that stops inside its header.
  const Bytes jpeg = encode(".jpg", make_image(32, 32));
  EXPECT_THROW(probe_image(Bytes(jpeg.begin(), jpeg.begin() + 40)), DataError);
}

TEST(Decode, ReadFileErrorsNameThePath) {
  TempDir dir;
  const fs::path missing = dir.path() / "missing.png";
  try {
    read_file(missing);
    FAIL() << "no IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
  }
  EXPECT_THROW(decode_file(missing), IoError);
  EXPECT_THROW(read_file(dir.path()), IoError);  // a directory
  const Bytes png = encode(".png", make_image(20, 10));
  EXPECT_EQ(read_file(dir.write("a.png", png)), png);
  EXPECT_EQ(decode_file(dir.path() / "a.png").image.size(), cv::Size(20, 10));
}

TEST(Decode, HugePngHeaderRejectedByMaxPixels) {
  const Bytes png = png_header(60000, 60000);
  const auto header = probe_image(png);
  EXPECT_EQ(header.format, "png");
  EXPECT_EQ(header.width, 60000);
  EXPECT_EQ(header.height, 60000);
  const std::string reason = data_error_reason([&] { decode_image(png); });
  EXPECT_NE(reason.find("3600000000"), std::string::npos) << reason;
  EXPECT_NE(reason.find("100000000"), std::string::npos) << reason;
  EXPECT_NE(reason.find("--max-pixels"), std::string::npos) << reason;
  DecodeOptions small;
  small.max_pixels = 100;
  EXPECT_NE(data_error_reason([&] {
              decode_image(encode(".png", make_image(11, 10)), small);
            }).find("--max-pixels"),
            std::string::npos);
  small.max_pixels = 110;
  EXPECT_NO_THROW(decode_image(encode(".png", make_image(11, 10)), small));
  // Raising the limit lets it through to OpenCV, which finds no pixel data: still a DataError.
  DecodeOptions big;
  big.max_pixels = 4'000'000'000;
  EXPECT_THROW(decode_image(png, big), DataError);
  // Corrupt headers.
  Bytes bad_crc = png;
  bad_crc[30] ^= 1;
  EXPECT_THROW(probe_image(bad_crc), DataError);
  EXPECT_THROW(probe_image(png_header(0, 10)), DataError);
  EXPECT_THROW(probe_image(png_header(3'000'000, 10)), DataError);
  EXPECT_THROW(probe_image(png_header(10, 10, 7, 2)), DataError);
  EXPECT_THROW(probe_image(Bytes(png.begin(), png.begin() + 20)), DataError);
}

TEST(Decode, SixteenBitPngScaledToEightBit) {
  cv::Mat wide(2, 3, CV_16UC3);
  const std::uint16_t values[] = {0,     65535, 32768, 257,   1000, 40000,
                                  12345, 54321, 128,   65000, 300,  2};
  for (int i = 0; i < 18; ++i) wide.ptr<std::uint16_t>(0)[i] = values[i % 12];
  const Bytes png = encode(".png", wide);
  EXPECT_EQ(probe_image(png).bit_depth, 16);
  const DecodedImage d = decode_image(png);
  ASSERT_EQ(d.image.type(), CV_8UC3);
  for (int i = 0; i < 18; ++i) {
    const int expected = static_cast<int>(std::lround(values[i % 12] * 255.0 / 65535.0));
    EXPECT_EQ(d.image.ptr<std::uint8_t>(0)[i], expected) << "value " << values[i % 12];
  }
  const cv::Mat grey16 = make_image(40, 30, CV_16UC1);
  const DecodedImage g = decode_image(encode(".png", grey16), opts(1));
  cv::Mat expected;
  grey16.convertTo(expected, CV_8U, 255.0 / 65535.0);
  EXPECT_EQ(max_diff(g.image, expected), 0.0);
}

TEST(Decode, AlphaDroppedAndChannelsConverted) {
  const cv::Mat bgra = make_image(33, 17, CV_8UC4, 5);
  const Bytes png = encode(".png", bgra);
  EXPECT_EQ(probe_image(png).channels, 4);
  cv::Mat bgr, grey;
  cv::cvtColor(bgra, bgr, cv::COLOR_BGRA2BGR);
  cv::cvtColor(bgra, grey, cv::COLOR_BGRA2GRAY);
  EXPECT_EQ(max_diff(decode_image(png).image, bgr), 0.0);
  EXPECT_EQ(max_diff(decode_image(png, opts(1)).image, grey), 0.0);

  const cv::Mat g = make_image(33, 17, CV_8UC1);
  const DecodedImage as_colour = decode_image(encode(".png", g), opts(3));
  ASSERT_EQ(as_colour.image.type(), CV_8UC3);
  std::vector<cv::Mat> planes;
  cv::split(as_colour.image, planes);
  for (const cv::Mat& p : planes) EXPECT_EQ(max_diff(p, g), 0.0);

  const cv::Mat colour = make_image(33, 17);
  cv::Mat luma;
  cv::cvtColor(colour, luma, cv::COLOR_BGR2GRAY);
  const DecodedImage as_grey = decode_image(encode(".png", colour), opts(1));
  ASSERT_EQ(as_grey.image.type(), CV_8UC1);
  EXPECT_EQ(max_diff(as_grey.image, luma), 0.0);

  // Grey JPEG to colour, colour JPEG to grey.
  const DecodedImage jpeg_colour = decode_image(encode(".jpg", g), opts(3));
  EXPECT_EQ(jpeg_colour.image.type(), CV_8UC3);
  const Bytes colour_jpeg = encode(".jpg", colour);
  const DecodedImage jpeg_grey = decode_image(colour_jpeg, opts(1));
  cv::Mat jpeg_luma;
  cv::cvtColor(decode_image(colour_jpeg).image, jpeg_luma, cv::COLOR_BGR2GRAY);
  EXPECT_LT(mean_diff(jpeg_grey.image, jpeg_luma), 1.5);
}

TEST(Decode, CmykJpegConvertedToBgr) {
  // Flat patches of known colour; inverted CMYK with K = 255 (no black) encodes RGB directly.
  cv::Mat cmyk(32, 64, CV_8UC4);
  for (int y = 0; y < 32; ++y) {
    for (int x = 0; x < 64; ++x) {
      auto* p = cmyk.ptr<std::uint8_t>(y) + 4 * x;
      const bool left = x < 32;
      p[0] = left ? 200 : 30;   // R
      p[1] = left ? 100 : 160;  // G
      p[2] = left ? 40 : 220;   // B
      p[3] = left ? 255 : 128;  // K: right half at half brightness
    }
  }
  const Bytes jpeg = libjpeg_encode(cmyk, 1, 1, 95);
  EXPECT_EQ(probe_image(jpeg).channels, 4);
  const DecodedImage d = decode_image(jpeg);
  ASSERT_EQ(d.image.type(), CV_8UC3);
  const cv::Vec3b left = d.image.at<cv::Vec3b>(16, 8);
  const cv::Vec3b right = d.image.at<cv::Vec3b>(16, 56);
  EXPECT_NEAR(left[0], 40, 4);
  EXPECT_NEAR(left[1], 100, 4);
  EXPECT_NEAR(left[2], 200, 4);
  EXPECT_NEAR(right[0], 220 * 128 / 255, 4);
  EXPECT_NEAR(right[1], 160 * 128 / 255, 4);
  EXPECT_NEAR(right[2], 30 * 128 / 255, 4);
  const DecodedImage grey = decode_image(jpeg, opts(1, {4, 4, 20, 20}));
  ASSERT_EQ(grey.image.type(), CV_8UC1);
  EXPECT_NEAR(grey.image.at<std::uint8_t>(10, 10), 0.299 * 200 + 0.587 * 100 + 0.114 * 40, 4);
}

TEST(Decode, TinyAndExtremeAspectImages) {
  for (const char* ext : {".jpg", ".png"}) {
    SCOPED_TRACE(ext);
    const Bytes one = encode(ext, make_image(1, 1));
    for (int d : {1, 2, 8}) {
      const DecodedImage img = decode_image(one, opts(3, {}, d));
      EXPECT_EQ(img.image.size(), cv::Size(1, 1));
      EXPECT_EQ(img.region, cv::Rect(0, 0, 1, 1));
    }
    EXPECT_EQ(decode_image(one, opts(3, {0, 0, 1, 1})).image.size(), cv::Size(1, 1));

    const Bytes strip = encode(ext, make_image(4000, 6));
    const auto header = probe_image(strip);
    EXPECT_EQ(header.width, 4000);
    EXPECT_EQ(header.height, 6);
    EXPECT_EQ(decode_image(strip).image.size(), cv::Size(4000, 6));
    EXPECT_EQ(decode_image(strip, opts(1, {}, 8)).image.size(), cv::Size(500, 1));
    const DecodedImage part = decode_image(strip, opts(3, {1234, 2, 500, 3}, 2));
    EXPECT_TRUE(contains(part.region, cv::Rect(1234, 2, 500, 3)));
    EXPECT_EQ(part.image.size(),
              cv::Size(ceil_div(part.region.width, 2), ceil_div(part.region.height, 2)));
    const Bytes column = encode(ext, make_image(6, 4000));
    EXPECT_EQ(decode_image(column, opts(3, {1, 3000, 4, 900}, 4)).image.cols,
              ceil_div(decode_image(column, opts(3, {1, 3000, 4, 900}, 4)).region.width, 4));
  }
}

TEST(Decode, NonJpegRegionAndScale) {
  const cv::Mat src = make_image(101, 77);
  const Bytes png = encode(".png", src);
  const cv::Rect want(10, 5, 50, 31);
  const DecodedImage part = decode_image(png, opts(3, want));
  EXPECT_EQ(part.region, want);
  EXPECT_EQ(max_diff(part.image, src(want)), 0.0);
  EXPECT_TRUE(part.image.isContinuous());
  const DecodedImage scaled = decode_image(png, opts(3, want, 4));
  EXPECT_EQ(scaled.image.size(), cv::Size(13, 8));
  cv::Mat expected;
  cv::resize(src(want), expected, cv::Size(13, 8), 0, 0, cv::INTER_AREA);
  EXPECT_EQ(max_diff(scaled.image, expected), 0.0);
}

TEST(Decode, GifIsDataError) {
  std::string gif = "GIF89a";
  gif += std::string("\x0a\x00\x0a\x00\x80\x00\x00", 7);
  const Bytes bytes(gif.begin(), gif.end());
  const std::string reason = data_error_reason([&] { probe_image(bytes); });
  EXPECT_NE(reason.find("GIF"), std::string::npos) << reason;
  EXPECT_NE(data_error_reason([&] { decode_image(bytes); }).find("GIF"), std::string::npos);
}

TEST(Decode, ProbeEachFormat) {
  struct Case {
    const char* ext;
    int type;
    const char* format;
    int channels;
    int bit_depth;
  };
  std::vector<Case> cases = {
      {".png", CV_8UC3, "png", 3, 8},   {".png", CV_8UC1, "png", 1, 8},
      {".png", CV_16UC1, "png", 1, 16}, {".jpg", CV_8UC3, "jpeg", 3, 8},
      {".jpg", CV_8UC1, "jpeg", 1, 8},  {".bmp", CV_8UC3, "bmp", 3, 8},
      {".tiff", CV_8UC3, "tiff", 3, 8}, {".tiff", CV_16UC1, "tiff", 1, 16},
      {".pgm", CV_8UC1, "pnm", 1, 8},   {".pgm", CV_16UC1, "pnm", 1, 16},
      {".ppm", CV_8UC3, "pnm", 3, 8},   {".pam", CV_8UC3, "pnm", 3, 8},
  };
  if (cv::haveImageWriter(".webp")) {
    cases.push_back({".webp", CV_8UC3, "webp", 3, 8});
    cases.push_back({".webp", CV_8UC4, "webp", 4, 8});
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.ext) + " type " + std::to_string(c.type));
    const cv::Mat src = make_image(37, 23, c.type);
    std::vector<int> params;
    if (std::string(c.ext) == ".webp" && c.type == CV_8UC3) params = {cv::IMWRITE_WEBP_QUALITY, 90};
    const Bytes bytes = encode(c.ext, src, params);
    const auto h = probe_image(bytes);
    EXPECT_EQ(h.format, c.format);
    EXPECT_EQ(h.width, 37);
    EXPECT_EQ(h.height, 23);
    EXPECT_EQ(h.channels, c.channels);
    EXPECT_EQ(h.bit_depth, c.bit_depth);
    const DecodedImage d = decode_image(bytes, opts(3, {3, 4, 20, 10}));
    EXPECT_TRUE(contains(d.region, {3, 4, 20, 10}));
    EXPECT_EQ(d.image.size(), d.region.size());
    if (h.format != "jpeg") {
      EXPECT_EQ(d.region, cv::Rect(3, 4, 20, 10));
    }
    EXPECT_EQ(d.image.type(), CV_8UC3);
  }
  // Hand-written headers for the plain-text and bitmap Netpbm kinds, and WebP chunk kinds.
  const std::string pbm = "P4\n# comment\n9 2\n";
  Bytes pbm_bytes(pbm.begin(), pbm.end());
  pbm_bytes.insert(pbm_bytes.end(), 4, 0x55);
  const auto h = probe_image(pbm_bytes);
  EXPECT_EQ(h.width, 9);
  EXPECT_EQ(h.height, 2);
  EXPECT_EQ(h.channels, 1);
  EXPECT_EQ(decode_image(pbm_bytes, opts(1)).image.size(), cv::Size(9, 2));
  const std::string plain = "P2 3 2 255 0 10 20 30 40 50\n";
  EXPECT_EQ(probe_image(Bytes(plain.begin(), plain.end())).width, 3);
  EXPECT_THROW(probe_image(Bytes{'P', '5', ' ', '3'}), DataError);
  EXPECT_THROW(probe_image(Bytes{'P', '5', ' ', '3', ' ', 'x', ' ', '2', '5', '5', '\n'}),
               DataError);
}

TEST(Decode, FuzzedHeadersNeverCrash) {
  std::vector<Bytes> seeds = {
      encode(".jpg", make_image(40, 30)),
      encode(".jpg", make_image(40, 30), {cv::IMWRITE_JPEG_PROGRESSIVE, 1}),
      with_exif_orientation(encode(".jpg", make_image(40, 30)), 6, true),
      encode(".png", make_image(40, 30)),
      encode(".bmp", make_image(40, 30)),
      encode(".tiff", make_image(40, 30)),
      encode(".pgm", make_image(40, 30, CV_8UC1)),
      png_header(60000, 60000),
  };
  if (cv::haveImageWriter(".webp")) seeds.push_back(encode(".webp", make_image(40, 30)));
  std::mt19937 rng(123);
  int decoded = 0;
  for (const Bytes& seed : seeds) {
    const bool jpeg = seed[0] == 0xFF;
    for (int trial = 0; trial < 400; ++trial) {
      Bytes b = seed;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        const std::size_t limit = std::min<std::size_t>(b.size(), jpeg ? b.size() : 96);
        b[rng() % limit] = static_cast<std::uint8_t>(rng());
      }
      if (rng() % 4 == 0) b.resize(rng() % b.size());
      try {
        const auto h = probe_image(b);
        EXPECT_GT(h.width, 0);
        EXPECT_GT(h.height, 0);
      } catch (const DataError&) {
      }
      // Full decodes of mutated non-JPEG data only exercise OpenCV's codecs; JPEG goes through
      // our own libjpeg driver, so decode those, with a region half the time.
      if (!jpeg) continue;
      DecodeOptions o;
      o.max_pixels = 1'000'000;
      if (trial % 2) o.region = {5, 5, 20, 10};
      o.scale_denom = 1 << (trial % 4);
      try {
        const DecodedImage d = decode_image(b, o);
        EXPECT_FALSE(d.image.empty());
        ++decoded;
      } catch (const DataError&) {
      } catch (const ConfigError&) {  // a mutated size can put the fixed region outside
      }
    }
  }
  EXPECT_GT(decoded, 0);
}

TEST(Decode, ConcurrentDecodesAgree) {
  const Bytes jpeg = encode(".jpg", make_image(320, 240));
  const cv::Rect want(40, 30, 200, 150);
  const cv::Mat expected = decode_image(jpeg, opts(3, want)).image;
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        if (cv::norm(decode_image(jpeg, opts(3, want)).image, expected, cv::NORM_INF) != 0)
          ++mismatches[t];
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

TEST(Decode, HymenopteraDataset) {
  const fs::path root = fs::path(AUGFLOW_SHARED_DIR "/datasets/hymenoptera");
  if (!fs::exists(root)) GTEST_SKIP() << root << " not present";
  int jpegs = 0;
  int gifs = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    std::string ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (ext == ".gif") {
      ++gifs;
      try {
        decode_file(entry.path());
        ADD_FAILURE() << entry.path() << " decoded";
      } catch (const DataError& e) {
        EXPECT_NE(e.reason().find("GIF"), std::string::npos) << e.what();
      }
      continue;
    }
    if (ext != ".jpg" && ext != ".jpeg") continue;
    ++jpegs;
    SCOPED_TRACE(entry.path().string());
    const DecodedImage full = decode_file(entry.path());
    const cv::Mat reference = cv::imread(entry.path().string(), cv::IMREAD_COLOR);
    ASSERT_EQ(full.image.size(), reference.size());
    EXPECT_LT(mean_diff(full.image, reference), 1.0);
    const int w = full.header.width;
    const int h = full.header.height;
    const cv::Rect centre(w / 8, h / 8, std::max(1, w * 3 / 4), std::max(1, h * 3 / 4));
    const DecodedImage part = decode_file(entry.path(), opts(3, centre, 2));
    EXPECT_TRUE(contains(part.region, centre));
  }
  EXPECT_GT(jpegs, 300);
  EXPECT_EQ(gifs, 1);
}
