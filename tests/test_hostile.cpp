// Hostile folders: a generated ImageFolder full of files that cannot or should not be used
// (zero bytes, truncated, bit-flipped, mis-named, GIF, a header claiming 60000x60000, a valid
// 400-megapixel PNG, an unreadable file), odd but valid images (16-bit, RGBA, grey, 1x1,
// 4000x6, names with spaces and non-ASCII letters), a symbolic-link loop and an empty class.
// `augflow train`, `eval`, `preview` and `bench loader` each finish, skip exactly the unusable
// files, keep every usable one under its own class, and stay below 1 GB of memory.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "pipeline/dataset.hpp"
#include "tests/fixtures.hpp"
#include "tests/process.hpp"

namespace augflow {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

void put_be32(Bytes& out, std::uint32_t x) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}

/// Appends a PNG chunk (length, type, data, CRC over type and data).
void png_chunk(Bytes& out, const char* type, const Bytes& data) {
  put_be32(out, static_cast<std::uint32_t>(data.size()));
  const std::size_t start = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_be32(out, static_cast<std::uint32_t>(crc32(0L, out.data() + start, static_cast<uInt>(out.size() - start))));
}

Bytes png_ihdr(std::uint32_t width, std::uint32_t height, std::uint8_t colour_type) {
  Bytes png{0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  Bytes ihdr;
  put_be32(ihdr, width);
  put_be32(ihdr, height);
  ihdr.insert(ihdr.end(), {8, colour_type, 0, 0, 0});
  png_chunk(png, "IHDR", ihdr);
  return png;
}

/// A valid grey PNG of width x height, all one value, deflated row by row as it is written:
/// 400 megapixels take about 1.7 MB on disk and no large buffer in the test.
void write_constant_png(const fs::path& path, std::uint32_t width, std::uint32_t height) {
  Bytes png = png_ihdr(width, height, 0);
  z_stream z{};
  ASSERT_EQ(deflateInit(&z, 1), Z_OK);
  Bytes row(width + 1, 128);
  row[0] = 0;  // filter: none
  Bytes buffer(1 << 20);
  auto drain = [&](int flush) {
    do {
      z.next_out = buffer.data();
      z.avail_out = static_cast<uInt>(buffer.size());
      deflate(&z, flush);
      const std::size_t n = buffer.size() - z.avail_out;
      if (n) png_chunk(png, "IDAT", Bytes(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n)));
    } while (z.avail_out == 0);
  };
  for (std::uint32_t y = 0; y < height; ++y) {
    z.next_in = row.data();
    z.avail_in = static_cast<uInt>(row.size());
    drain(Z_NO_FLUSH);
  }
  drain(Z_FINISH);
  deflateEnd(&z);
  png_chunk(png, "IEND", {});
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(png.data(), 1, png.size(), f);
  std::fclose(f);
}

struct Hostile {
  fs::path root;
  std::size_t usable = 0;
  std::size_t skipped = 0;
  std::map<std::string, std::size_t> usable_per_class;
  bool unreadable_tested = true;
};

/// Builds the folder; every file is generated here (OpenCV writes the images).
Hostile make_hostile(const test::TempDir& dir) {
  Hostile h;
  h.root = dir.path() / "hostile";
  const auto put = [&](const std::string& name, const Bytes& bytes, bool usable) {
    dir.write("hostile/" + name, bytes);
    const std::string cls = name.substr(0, name.find('/'));
    if (usable) {
      ++h.usable;
      ++h.usable_per_class[cls];
    } else {
      ++h.skipped;
    }
  };
  const cv::Mat colour = test::smooth_image(40, 30);
  const Bytes jpeg = test::encode(colour, ".jpg");
  for (int i = 0; i < 4; ++i) put("ants/a" + std::to_string(i) + ".jpg", test::encode(test::noise_image(40, 30, 3, i), ".jpg"), true);
  put("ants/grey.png", test::encode(test::smooth_image(20, 18, 1), ".png"), true);
  cv::Mat rgba;
  cv::cvtColor(test::smooth_image(21, 17), rgba, cv::COLOR_BGR2BGRA);
  put("ants/rgba.png", test::encode(rgba, ".png"), true);
  cv::Mat deep;
  test::smooth_image(19, 23).convertTo(deep, CV_16UC3, 257.0);
  put("ants/deep16.png", test::encode(deep, ".png"), true);
  put("ants/one.png", test::encode(test::noise_image(1, 1), ".png"), true);
  put("ants/wide.png", test::encode(test::smooth_image(4000, 6), ".png"), true);
  put("ants/spaced n\xC3\xA4me \xC3\xB8\xC3\xA9 \xE7\xA9\xBA.png", test::encode(test::noise_image(25, 25, 3, 7), ".png"), true);
  put("ants/png_named.jpg", test::encode(test::noise_image(24, 20, 3, 8), ".png"), true);
  put("ants/zero.jpg", {}, false);
  put("ants/truncated.jpg", Bytes(jpeg.begin(), jpeg.begin() + static_cast<std::ptrdiff_t>(jpeg.size() / 2)), false);
  put("ants/anim.gif", {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0x80, 0, 0, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0x2C, 0, 0,
                        0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 1, 0, 0x3B},
      false);
  fs::create_directory_symlink(".", h.root / "ants" / "loop");  // a link back into its own folder

  for (int i = 0; i < 3; ++i) put("bees/b" + std::to_string(i) + ".png", test::encode(test::noise_image(30, 40, 3, 20 + i), ".png"), true);
  // A flipped bit inside the compressed pixel data (IDAT): the chunk's CRC no longer matches.
  Bytes flipped = test::encode(test::noise_image(30, 30, 3, 30), ".png");
  const std::size_t idat = std::string(flipped.begin(), flipped.end()).find("IDAT");
  flipped.at(idat + 40) ^= 0x10;
  put("bees/bitflip.png", flipped, false);
  // A flipped bit in a JPEG's frame marker (SOF0 0xFFC0 -> 0xFFC8, reserved): no frame header.
  Bytes bad_marker = jpeg;
  for (std::size_t i = 2; i + 1 < bad_marker.size(); ++i)
    if (bad_marker[i] == 0xFF && bad_marker[i + 1] == 0xC0) {
      bad_marker[i + 1] ^= 0x08;
      break;
    }
  put("bees/bitflip.jpg", bad_marker, false);
  Bytes huge = png_ihdr(60000, 60000, 2);
  png_chunk(huge, "IEND", {});
  put("bees/huge_header.png", huge, false);
  const auto t0 = std::chrono::steady_clock::now();
  write_constant_png(h.root / "bees" / "big400mp.png", 20000, 20000);
  ++h.skipped;  // over the default 100-megapixel limit
  std::printf("[hostile] the 400-megapixel PNG took %.1f s to write (%ju bytes)\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(),
              static_cast<std::uintmax_t>(fs::file_size(h.root / "bees" / "big400mp.png")));
  const auto locked = dir.write("hostile/bees/locked.png", test::encode(test::noise_image(10, 10, 3, 40), ".png"));
  ::chmod(locked.c_str(), 0);
  const int fd = ::open(locked.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::close(fd);
    h.unreadable_tested = false;
    ++h.usable;
    ++h.usable_per_class["bees"];
    std::printf("[hostile] running as root: chmod 000 does not stop reading, so locked.png is usable here and the "
                "unreadable-file case is not tested\n");
  } else {
    ++h.skipped;
  }
  dir.write("hostile/bees/.hidden.png", test::encode(test::noise_image(8, 8), ".png"));  // ignored
  dir.write("hostile/bees/notes.txt", {'h', 'i'});                                       // ignored
  dir.write("hostile/stray.png", test::encode(test::noise_image(8, 8), ".png"));         // ignored: not in a class
  fs::create_directories(h.root / "empty");
  return h;
}

void expect_small(const test::ChildExit& e, const char* what) {
  if (test::kSanitized) return;  // sanitizer shadow memory inflates the figure
  EXPECT_LT(e.max_rss_kb, 1024 * 1024) << what << ": peak memory " << e.max_rss_kb / 1024 << " MB";
}

using test::read_json;

TEST(Hostile, EveryCommandSkipsExactlyTheUnusableFilesAndKeepsTheLabels) {
  test::TempDir dir;
  const Hostile h = make_hostile(dir);
  const fs::path log = dir.path() / "augflow.log";
  const std::string data = h.root.string();
  const std::string aug = "resized_crop(16) | hflip | normalize(none)";

  // Listing: every listed file is under its class, the empty class keeps its id.
  const pipeline::Dataset listed = pipeline::open_image_folder(h.root);
  ASSERT_EQ(listed.class_names, (std::vector<std::string>{"ants", "bees", "empty"}));
  ASSERT_EQ(listed.size(), h.usable + h.skipped);
  for (std::size_t i = 0; i < listed.size(); ++i)
    EXPECT_EQ(listed.paths[i].parent_path().filename().string(), listed.class_names[listed.labels[i]]) << listed.paths[i];

  // bench loader
  const auto bench = test::run_augflow({"bench", "loader", "--data", data, "--aug", aug, "--batch", "4", "--threads", "2",
                                        "--epochs", "1", "--json", (dir.path() / "bench.json").string()},
                                       log);
  ASSERT_TRUE(bench.exited && bench.status == 0) << "signal " << bench.signal << " status " << bench.status << " " << test::read_text(log);
  const auto b = read_json(dir.path() / "bench.json");
  EXPECT_EQ(b["skipped_files"], h.skipped) << b.dump();
  EXPECT_EQ(b["dataset_images"], h.usable) << b.dump();
  expect_small(bench, "bench loader");

  // train
  const fs::path run = dir.path() / "run";
  const auto train = test::run_augflow({"train", "--train", data, "--model", "fc3", "--aug", aug, "--epochs", "1",
                                        "--batch", "4", "--threads", "2", "--out", run.string()},
                                       log);
  ASSERT_TRUE(train.exited && train.status == 0) << test::read_text(log);
  const auto s = read_json(run / "summary.json");
  EXPECT_EQ(s["skipped_files"], h.skipped) << s.dump();
  expect_small(train, "train");

  // eval: the confusion matrix's rows (true classes) hold exactly each class's usable images.
  const auto eval = test::run_augflow({"eval", "--data", data, "--model", (run / "last.ckpt").string(), "--batch", "8",
                                       "--json", (dir.path() / "eval.json").string()},
                                      log);
  ASSERT_TRUE(eval.exited && eval.status == 0) << test::read_text(log);
  const auto e = read_json(dir.path() / "eval.json");
  EXPECT_EQ(e["skipped_files"], h.skipped) << e.dump();
  EXPECT_EQ(e["images"], h.usable) << e.dump();
  const auto& confusion = e["confusion"];
  ASSERT_EQ(confusion.size(), 3u);
  for (std::size_t row = 0; row < 3; ++row) {
    std::size_t sum = 0;
    for (const auto& v : confusion[row]) sum += v.get<std::size_t>();
    const std::string cls = listed.class_names[row];
    EXPECT_EQ(sum, h.usable_per_class.count(cls) ? h.usable_per_class.at(cls) : 0u) << "class " << cls;
  }
  expect_small(eval, "eval");

  // preview: each image of the folder in turn; the unusable ones exit 1 naming the file.
  std::size_t previewed = 0, refused = 0;
  long max_rss = 0;
  for (std::size_t i = 0; i < 64; ++i) {
    const fs::path one_log = dir.path() / ("preview" + std::to_string(i) + ".log");
    const auto p = test::run_augflow({"preview", data, "--index", std::to_string(i), "--aug", aug, "--n", "1",
                                      "--tile", "32", "--out", (dir.path() / "preview.png").string()},
                                     one_log);
    ASSERT_TRUE(p.exited) << test::read_text(one_log);
    max_rss = std::max(max_rss, p.max_rss_kb);
    if (p.status == 2) break;  // --index past the last image
    if (p.status == 0) ++previewed;
    else if (p.status == 1) ++refused;
    else ADD_FAILURE() << "preview --index " << i << " exited " << p.status << ": " << test::read_text(one_log);
  }
  EXPECT_EQ(previewed, h.usable + 1) << "preview lists every image below the folder, stray.png in its root too";
  EXPECT_EQ(refused, h.skipped);
  test::ChildExit worst;
  worst.max_rss_kb = max_rss;
  expect_small(worst, "preview");
  std::printf("[hostile] %zu usable, %zu skipped%s; peak memory: bench %ld MB, train %ld MB, eval %ld MB, preview %ld MB\n",
              h.usable, h.skipped, h.unreadable_tested ? "" : " (unreadable case not tested: root)", bench.max_rss_kb / 1024,
              train.max_rss_kb / 1024, eval.max_rss_kb / 1024, max_rss / 1024);
}

}  // namespace
}  // namespace augflow
