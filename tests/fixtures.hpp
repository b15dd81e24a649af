// Shared helpers of the augflow tests: images generated in code (never third-party files),
// encoding to file bytes, byte-exact and tolerance comparisons, and a temporary folder.
//
// Everything here is deterministic: the same call gives the same pixels on every run, so a
// failure can be reproduced from the test name alone.
#pragma once

#include <stdlib.h>  // mkdtemp
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "common/error.hpp"
#include "common/rng.hpp"
#include "model/tensor.hpp"

namespace augflow::test {

/// Pseudo-random texture: every pixel and channel a hash of (seed, x, y, c). No two
/// neighbouring pixels are alike and the image has no symmetry, so any geometric change
/// (a flip, an off-by-one crop) shows up in the bytes.
inline cv::Mat noise_image(int width, int height, int channels = 3, std::uint64_t seed = 1) {
  cv::Mat image(height, width, CV_8UC(channels));
  for (int y = 0; y < height; ++y) {
    std::uint8_t* row = image.ptr<std::uint8_t>(y);
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c) {
        const std::uint64_t key = (static_cast<std::uint64_t>(y) << 40) ^ (static_cast<std::uint64_t>(x) << 8) ^
                                  static_cast<std::uint64_t>(c);
        row[x * channels + c] = static_cast<std::uint8_t>(augflow::mix64(key ^ augflow::mix64(seed)) >> 56);
      }
  }
  return image;
}

/// Smooth, strongly asymmetric image defined in relative coordinates (u = x/W, v = y/H), so it
/// looks the same at any size: red rises left to right, green top to bottom, blue is a slow
/// diagonal wave. Resampling it along different paths (scaled JPEG decode, area vs bilinear)
/// changes values by a few levels only, while a crop from the wrong place (a missed mirror, a
/// shifted rectangle) changes them by tens.
inline cv::Mat smooth_image(int width, int height, int channels = 3) {
  cv::Mat image(height, width, CV_8UC3);
  for (int y = 0; y < height; ++y) {
    auto* row = image.ptr<cv::Vec3b>(y);
    const double v = (y + 0.5) / height;
    for (int x = 0; x < width; ++x) {
      const double u = (x + 0.5) / width;
      const double wave = std::sin(2 * std::numbers::pi * (1.3 * u + 0.7 * v));
      row[x] = cv::Vec3b(cv::saturate_cast<std::uint8_t>(128 + 90 * wave),
                         cv::saturate_cast<std::uint8_t>(20 + 215 * v),
                         cv::saturate_cast<std::uint8_t>(20 + 215 * u));
    }
  }
  if (channels == 3) return image;
  cv::Mat grey(height, width, CV_8UC1);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      const cv::Vec3b p = image.at<cv::Vec3b>(y, x);
      grey.at<std::uint8_t>(y, x) = cv::saturate_cast<std::uint8_t>(0.114 * p[0] + 0.587 * p[1] + 0.299 * p[2]);
    }
  return grey;
}

/// Encodes with OpenCV: ".jpg" (quality 95 unless given), ".png", ".bmp", ...
inline std::vector<std::uint8_t> encode(const cv::Mat& image, const std::string& ext = ".jpg",
                                        int quality = 95) {
  std::vector<std::uint8_t> bytes;
  std::vector<int> params;
  if (ext == ".jpg") params = {cv::IMWRITE_JPEG_QUALITY, quality};
  if (!cv::imencode(ext, image, bytes, params)) ADD_FAILURE() << "cv::imencode(" << ext << ") failed";
  return bytes;
}

/// Byte-exact equality of two 8-bit images, with where they first differ on failure.
inline ::testing::AssertionResult same_bytes(const cv::Mat& a, const cv::Mat& b) {
  if (a.size() != b.size() || a.type() != b.type())
    return ::testing::AssertionFailure() << "size/type differ: " << a.cols << "x" << a.rows << " type "
                                         << a.type() << " vs " << b.cols << "x" << b.rows << " type " << b.type();
  const int n = a.cols * a.channels();
  for (int y = 0; y < a.rows; ++y) {
    const std::uint8_t* pa = a.ptr<std::uint8_t>(y);
    const std::uint8_t* pb = b.ptr<std::uint8_t>(y);
    for (int i = 0; i < n; ++i)
      if (pa[i] != pb[i])
        return ::testing::AssertionFailure()
               << "first difference at x=" << i / a.channels() << " y=" << y << " channel "
               << i % a.channels() << ": " << int(pa[i]) << " vs " << int(pb[i]);
  }
  return ::testing::AssertionSuccess();
}

struct DiffStats {
  double mean = 0;  ///< mean absolute difference per channel value
  int max = 0;      ///< largest absolute difference
};

inline DiffStats diff_stats(const cv::Mat& a, const cv::Mat& b) {
  CV_Assert(a.size() == b.size() && a.type() == b.type() && a.depth() == CV_8U);
  DiffStats s;
  double sum = 0;
  const int n = a.cols * a.channels();
  for (int y = 0; y < a.rows; ++y) {
    const std::uint8_t* pa = a.ptr<std::uint8_t>(y);
    const std::uint8_t* pb = b.ptr<std::uint8_t>(y);
    for (int i = 0; i < n; ++i) {
      const int d = std::abs(int(pa[i]) - int(pb[i]));
      sum += d;
      s.max = std::max(s.max, d);
    }
  }
  s.mean = a.total() ? sum / (static_cast<double>(a.total()) * a.channels()) : 0;
  return s;
}

inline std::string describe(const cv::Rect& r) {
  std::ostringstream out;
  out << "[" << r.x << "," << r.y << " " << r.width << "x" << r.height << "]";
  return out.str();
}

/// A fresh folder under the system temp directory, removed with everything in it on scope exit.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "augflow_test_XXXXXX").string();
    if (!::mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed for " + pattern);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  /// Writes `bytes` to path()/name (creating sub-folders) and returns the full path.
  std::filesystem::path write(const std::string& name, const std::vector<std::uint8_t>& bytes) const {
    const auto file = path_ / name;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream out(file, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + file.string());
    return file;
  }

 private:
  std::filesystem::path path_;
};

/// A training set of two classes told apart by colour (red vs blue), with noise and varied
/// sizes: dir/data/{blue,red}/imgN.png, `per_class` images each.
inline void write_colour_folder(const TempDir& dir, int per_class) {
  for (int label = 0; label < 2; ++label) {
    for (int i = 0; i < per_class; ++i) {
      cv::Mat image = noise_image(36 + i % 5, 34 + i % 7, 3, 100 * label + i);
      image *= 0.3;
      image += label == 0 ? cv::Scalar(0, 0, 170) : cv::Scalar(170, 0, 0);
      dir.write(std::string("data/") + (label ? "blue" : "red") + "/img" + std::to_string(i) + ".png",
                encode(image, ".png"));
    }
  }
}

/// A tensor of standard-normal values, a pure function of (shape, seed).
inline model::Tensor random_tensor(model::Shape shape, std::uint64_t seed) {
  model::Tensor t(shape);
  Rng rng({seed, 0, 0});
  for (std::size_t i = 0; i < t.size(); ++i) t[i] = static_cast<float>(rng.normal());
  return t;
}

/// What running the augflow binary gave.
struct Result {
  int status = -1;
  std::string output;  // stdout and stderr together
};

/// Runs `PROGRAM ARGS` through the shell (a binary this build made).
inline Result run_program(const std::string& program, const std::string& args) {
  Result result;
  const std::string command = program + " " + args + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) return result;
  char buffer[4096];
  while (std::fgets(buffer, sizeof buffer, pipe)) result.output += buffer;
  const int raw = ::pclose(pipe);
  result.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  return result;
}

/// Every tensor of `a` equals `b`'s bit for bit, by name (checkpoint params and state).
inline void expect_same_tensors(const std::map<std::string, model::Tensor>& a,
                                const std::map<std::string, model::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, t] : a) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(b.count(name));
    const model::Tensor& u = b.at(name);
    EXPECT_EQ(t.shape(), u.shape());
    ASSERT_EQ(t.size(), u.size());
    if (t.size() > 0) {
      EXPECT_EQ(std::memcmp(t.data(), u.data(), t.size() * sizeof(float)), 0);
    }
  }
}

/// Runs `augflow ARGS` (the binary this build made) through the shell.
inline Result run(const std::string& args) { return run_program(AUGFLOW_BINARY, args); }

/// The JSON file at `path` (run folders' config.json and summary.json, --json reports).
inline nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}

/// Expects f() to throw an augflow::Error whose message contains `needle`.
template <class F>
void expect_throws_with(F&& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace augflow::test
