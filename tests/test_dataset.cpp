// Data sets: image folders (classes, hidden files, extensions, symbolic-link loops), IDX files
// (round trip, malformed files), Fashion-MNIST (generated, and Debian's real files when
// installed), list files and the stratified split. Every input is generated in a TempDir.
#include <stdlib.h>  // setenv, unsetenv
#include <unistd.h>  // geteuid

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <opencv2/core.hpp>
#include <zlib.h>

#include "common/error.hpp"
#include "pipeline/dataset.hpp"
#include "pipeline/image_files.hpp"
#include "tests/fixtures.hpp"

namespace augflow::pipeline {
namespace {

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;
using test::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers

/// Small real image bytes with the extension's encoder ("x.JPEG" is encoded as JPEG).
Bytes image_bytes(const std::string& name) {
  std::string ext = fs::path(name).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  if (ext == ".jpeg") ext = ".jpg";
  if (ext == ".gif") return {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0};  // OpenCV cannot write GIF
  return test::encode(test::smooth_image(8, 6), ext);
}

fs::path write_image(const TempDir& dir, const std::string& name) { return dir.write(name, image_bytes(name)); }

Bytes text_bytes(const std::string& text) { return Bytes(text.begin(), text.end()); }

/// Collects warnings; `count(word)` says how many mention `word`.
struct Warnings {
  std::vector<std::string> messages;
  WarningSink sink() {
    return [this](const std::string& m) { messages.push_back(m); };
  }
  std::size_t count(const std::string& word) const {
    return static_cast<std::size_t>(std::count_if(messages.begin(), messages.end(),
                                                  [&](const std::string& m) { return m.find(word) != std::string::npos; }));
  }
  std::string all() const {
    std::string out;
    for (const auto& m : messages) out += m + "\n";
    return out;
  }
};

std::vector<std::string> strings(const std::vector<fs::path>& paths) {
  std::vector<std::string> out;
  for (const auto& p : paths) out.push_back(p.string());
  return out;
}

/// Sets (or, with nullptr, unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value, 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_.c_str(), old_->c_str(), 1);
    else ::unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

void put_u32(Bytes& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(v >> shift));
}

/// Pixel value of image i at (r, c) in generated IDX files.
std::uint8_t idx_pixel(std::size_t i, int r, int c) { return static_cast<std::uint8_t>(i * 37 + r * 5 + c * 11 + 1); }

Bytes idx_images(std::uint32_t count, std::uint32_t rows, std::uint32_t cols, std::uint32_t magic = 0x00000803) {
  Bytes out;
  put_u32(out, magic);
  put_u32(out, count);
  put_u32(out, rows);
  put_u32(out, cols);
  for (std::size_t i = 0; i < count; ++i)
    for (std::uint32_t r = 0; r < rows; ++r)
      for (std::uint32_t c = 0; c < cols; ++c) out.push_back(idx_pixel(i, int(r), int(c)));
  return out;
}

Bytes idx_labels(const std::vector<std::uint8_t>& labels) {
  Bytes out;
  put_u32(out, 0x00000801);
  put_u32(out, static_cast<std::uint32_t>(labels.size()));
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

/// Writes gzip-compressed `bytes` with zlib.
fs::path write_gz(const fs::path& path, const Bytes& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  if (!f) throw std::runtime_error("gzopen failed for " + path.string());
  const int n = gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  gzclose(f);
  if (n != static_cast<int>(bytes.size())) throw std::runtime_error("gzwrite failed for " + path.string());
  return path;
}

Bytes read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

/// A tiny Fashion-MNIST look-alike: train has `per_class` images of each of the 10 classes.
void write_tiny_fashion(const fs::path& dir, int per_class) {
  fs::create_directories(dir);
  std::vector<std::uint8_t> train_labels;
  for (int i = 0; i < 10 * per_class; ++i) train_labels.push_back(static_cast<std::uint8_t>(i % 10));
  write_gz(dir / "train-images-idx3-ubyte.gz", idx_images(static_cast<std::uint32_t>(train_labels.size()), 4, 3));
  write_gz(dir / "train-labels-idx1-ubyte.gz", idx_labels(train_labels));
  write_gz(dir / "t10k-images-idx3-ubyte.gz", idx_images(3, 4, 3));
  write_gz(dir / "t10k-labels-idx1-ubyte.gz", idx_labels({9, 0, 5}));
}

/// Runs `f`, expects a DataError naming `path`, and returns its message.
template <class F>
std::string data_error(F f, const fs::path& path) {
  try {
    f();
  } catch (const DataError& e) {
    EXPECT_EQ(e.path(), path.string()) << e.what();
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected DataError, got: " << e.what();
    return {};
  }
  ADD_FAILURE() << "expected DataError naming " << path;
  return {};
}

// ---------------------------------------------------------------------------------------------
// Image folders

TEST(ImageFolder, ClassesBySortedNameImagesRecursiveOthersIgnored) {
  TempDir dir;
  const fs::path root = dir.path() / "data";
  write_image(dir, "data/zebra/z1.png");
  write_image(dir, "data/ant/b.jpg");
  write_image(dir, "data/ant/a.png");
  write_image(dir, "data/ant/sub/deep/c.JPEG");  // upper-case extension counts
  write_image(dir, "data/ant/.hidden.png");      // hidden file
  write_image(dir, "data/ant/.cache/d.png");     // inside a hidden folder
  dir.write("data/ant/notes.txt", text_bytes("not an image"));
  write_image(dir, "data/mid/anim.GIF");         // listed; the loader finds it undecodable
  write_image(dir, "data/.hidden_class/e.png");  // not a class
  write_image(dir, "data/stray.png");            // directly in root: ignored
  dir.write("data/README.md", text_bytes("about"));

  Warnings w;
  const Dataset d = open_image_folder(root, w.sink());
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"ant", "mid", "zebra"}));
  EXPECT_EQ(d.channels, 3);
  EXPECT_FALSE(d.in_memory());
  EXPECT_EQ(d.name, root.string());
  const std::vector<std::string> expected{
      (root / "ant/a.png").string(), (root / "ant/b.jpg").string(), (root / "ant/sub/deep/c.JPEG").string(),
      (root / "mid/anim.GIF").string(), (root / "zebra/z1.png").string()};
  EXPECT_EQ(strings(d.paths), expected);
  EXPECT_EQ(d.labels, (std::vector<int>{0, 0, 0, 1, 2}));
  EXPECT_EQ(d.class_counts(), (std::vector<std::size_t>{3, 1, 1}));
  EXPECT_EQ(d.describe(2), expected[2]);
  // One warning for the two files in root, saying how many.
  EXPECT_EQ(w.count("directly in"), 1u) << w.all();
  EXPECT_EQ(w.count("2 files"), 1u) << w.all();

  // The shared walker lists the same tree for list_image_files (root files included).
  const auto listed = strings(list_image_files(root));
  std::vector<std::string> with_root = expected;
  with_root.push_back((root / "stray.png").string());
  std::sort(with_root.begin(), with_root.end());
  EXPECT_EQ(listed, with_root);
  EXPECT_EQ(list_image_files(root / "ant/a.png"), std::vector<fs::path>{root / "ant/a.png"});
}

TEST(ImageFolder, EmptyClassWarnsAndKeepsItsId) {
  TempDir dir;
  write_image(dir, "d/a/1.png");
  dir.write("d/b/readme.txt", text_bytes("no images here"));
  write_image(dir, "d/c/1.png");
  write_image(dir, "d/c/2.png");
  Warnings w;
  const Dataset d = open_image_folder(dir.path() / "d", w.sink());
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(d.labels, (std::vector<int>{0, 2, 2}));
  EXPECT_EQ(d.class_counts(), (std::vector<std::size_t>{1, 0, 2}));
  ASSERT_EQ(w.count("'b'"), 1u) << w.all();
  EXPECT_EQ(w.count("class id 1"), 1u) << w.all();
}

TEST(ImageFolder, SymlinkLoopsTerminateWarnAndListNothingTwice) {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  write_image(dir, "root/a/1.png");
  write_image(dir, "root/a/inner/2.png");
  write_image(dir, "root/b/3.png");
  fs::create_directory_symlink(root, root / "a/to_root");              // back to the root
  fs::create_directory_symlink(root / "a", root / "a/inner/to_class");  // back to its own class
  fs::create_directory_symlink(root / "b", root / "a/to_sibling");      // into another class
  fs::create_directory_symlink(dir.path(), root / "b/to_grandparent");  // above the root
  fs::create_directory_symlink(root / "a/inner", root / "a/a_first");   // sorts before "inner"

  Warnings w;
  const Dataset d = open_image_folder(root, w.sink());
  const std::vector<std::string> expected{(root / "a/1.png").string(), (root / "a/inner/2.png").string(),
                                          (root / "b/3.png").string()};
  EXPECT_EQ(strings(d.paths), expected);
  EXPECT_EQ(d.labels, (std::vector<int>{0, 0, 1}));
  for (const char* link : {"to_root'", "to_class'", "to_sibling'", "a_first'"})
    EXPECT_EQ(w.count(link), 1u) << link << "\n" << w.all();
  // The link above the root is followed, and the root inside it is skipped.
  EXPECT_EQ(w.count("to_grandparent/root'"), 1u) << w.all();

  Warnings w2;
  const auto listed = strings(list_image_files(root, w2.sink()));
  EXPECT_EQ(listed, expected);
  EXPECT_GE(w2.messages.size(), 4u) << w2.all();
}

TEST(ImageFolder, FollowsLinksToFoldersOutsideOnce) {
  TempDir dir;
  const fs::path root = dir.path() / "root";
  write_image(dir, "outside/o1.png");
  write_image(dir, "outside/deep/o2.bmp");
  write_image(dir, "elsewhere/e1.png");
  write_image(dir, "root/a/1.png");
  fs::create_directory(root / "b");
  fs::create_directory_symlink(dir.path() / "outside", root / "a/ext");
  fs::create_directory_symlink(dir.path() / "outside", root / "b/ext_again");  // a duplicate
  fs::create_directory_symlink(dir.path() / "elsewhere", root / "c");          // a class folder link

  Warnings w;
  const Dataset d = open_image_folder(root, w.sink());
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(strings(d.paths), (std::vector<std::string>{(root / "a/1.png").string(),
                                                        (root / "a/ext/deep/o2.bmp").string(),
                                                        (root / "a/ext/o1.png").string(),
                                                        (root / "c/e1.png").string()}));
  EXPECT_EQ(d.labels, (std::vector<int>{0, 0, 0, 2}));
  EXPECT_EQ(w.count("ext_again'"), 1u) << w.all();
  EXPECT_EQ(w.count("class folder 'b' has no images"), 1u) << w.all();
}

TEST(ImageFolder, UnreadableSubFolderIsAWarning) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every folder";
  TempDir dir;
  write_image(dir, "d/a/1.png");
  write_image(dir, "d/a/locked/2.png");
  fs::permissions(dir.path() / "d/a/locked", fs::perms::none);
  Warnings w;
  const Dataset d = open_image_folder(dir.path() / "d", w.sink());
  fs::permissions(dir.path() / "d/a/locked", fs::perms::owner_all);
  EXPECT_EQ(d.size(), 1u);
  EXPECT_EQ(w.count("locked"), 1u) << w.all();
}

TEST(ImageFolder, Errors) {
  TempDir dir;
  EXPECT_THROW(open_image_folder(dir.path() / "missing"), IoError);
  EXPECT_THROW(list_image_files(dir.path() / "missing"), IoError);
  write_image(dir, "flat/1.png");
  EXPECT_THROW(open_image_folder(dir.path() / "flat/1.png"), IoError);  // a file, not a folder
  data_error([&] { open_image_folder(dir.path() / "flat"); }, dir.path() / "flat");  // no class folder
  dir.write("noimages/a/x.txt", text_bytes("x"));
  fs::create_directories(dir.path() / "noimages/b");
  const auto message = data_error([&] { open_image_folder(dir.path() / "noimages"); }, dir.path() / "noimages");
  EXPECT_NE(message.find("no image"), std::string::npos) << message;
}

TEST(ImageFolder, SharedHymenopteraTrain) {
  const fs::path root = fs::path(AUGFLOW_SHARED_DIR) / "datasets/hymenoptera/train";
  if (!fs::is_directory(root)) GTEST_SKIP() << root << " is not there";
  const Dataset d = open_image_folder(root);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"ants", "bees"}));
  const auto gif = std::find_if(d.paths.begin(), d.paths.end(), [](const fs::path& p) {
    return p.filename() == "imageNotFound.gif";
  });
  ASSERT_NE(gif, d.paths.end()) << "the GIF is listed; the loader excludes it when it cannot decode it";
  EXPECT_EQ(d.labels[static_cast<std::size_t>(gif - d.paths.begin())], 0);
  EXPECT_EQ(d.size(), list_image_files(root).size());
}

// ---------------------------------------------------------------------------------------------
// IDX

TEST(Idx, RoundTripGzippedAndPlain) {
  TempDir dir;
  const std::vector<std::uint8_t> labels{0, 3, 1, 3, 2};
  const auto images = idx_images(5, 3, 4);
  for (const bool gz : {true, false}) {
    SCOPED_TRACE(gz ? "gzip" : "plain");
    const std::string suffix = gz ? ".gz" : "";
    const fs::path ipath = dir.path() / ("images-idx3-ubyte" + suffix);
    const fs::path lpath = dir.path() / ("labels-idx1-ubyte" + suffix);
    if (gz) {
      write_gz(ipath, images);
      write_gz(lpath, idx_labels(labels));
    } else {
      dir.write(ipath.filename(), images);
      dir.write(lpath.filename(), idx_labels(labels));
    }
    const Dataset d = open_idx(ipath, lpath, "digits");
    ASSERT_EQ(d.size(), 5u);
    EXPECT_TRUE(d.in_memory());
    EXPECT_TRUE(d.paths.empty());
    EXPECT_EQ(d.channels, 1);
    EXPECT_EQ(d.rows, 3);
    EXPECT_EQ(d.cols, 4);
    EXPECT_EQ(d.labels, (std::vector<int>{0, 3, 1, 3, 2}));
    EXPECT_EQ(d.class_names, (std::vector<std::string>{"0", "1", "2", "3"}));
    EXPECT_EQ(d.pixels->size(), 5u * 3 * 4);
    for (std::size_t i = 0; i < d.size(); ++i) {
      const cv::Mat m = d.image(i);
      ASSERT_EQ(m.type(), CV_8UC1);
      ASSERT_EQ(m.size(), cv::Size(4, 3));
      for (int r = 0; r < 3; ++r)
        for (int c = 0; c < 4; ++c) ASSERT_EQ(m.at<std::uint8_t>(r, c), idx_pixel(i, r, c)) << i << " " << r << " " << c;
    }
    EXPECT_EQ(d.describe(3), "digits#3");
  }
}

TEST(Idx, SubsetSharesPixelsAndKeepsOriginalIndex) {
  TempDir dir;
  const auto ipath = dir.write("i", idx_images(5, 2, 2));
  const auto lpath = dir.write("l", idx_labels({1, 1, 0, 2, 0}));
  const Dataset d = open_idx(ipath, lpath, "fashion-mnist:train");
  EXPECT_EQ(d.class_names.size(), 10u);
  EXPECT_EQ(d.class_names[0], "T-shirt/top");
  EXPECT_EQ(d.class_names[9], "Ankle boot");
  const Dataset s = d.subset({4, 1});
  EXPECT_EQ(s.pixels, d.pixels);
  EXPECT_EQ(s.class_names, d.class_names);
  EXPECT_EQ(s.name, d.name);
  EXPECT_EQ(s.channels, 1);
  EXPECT_EQ(s.labels, (std::vector<int>{0, 1}));
  EXPECT_EQ(s.image(0).data, d.image(4).data);  // a view, no copy
  EXPECT_EQ(s.describe(0), "fashion-mnist:train#4");
  EXPECT_EQ(s.describe(1), "fashion-mnist:train#1");
}

TEST(Idx, OpenedAgainSharesPixelsWhileAliveAndRereadsAChangedFile) {
  TempDir dir;
  const auto ipath = dir.write("i", idx_images(5, 2, 2));
  const auto lpath = dir.write("l", idx_labels({1, 1, 0, 2, 0}));
  auto first = std::make_unique<Dataset>(open_idx(ipath, lpath, "digits"));
  const Dataset again = open_idx(ipath, lpath, "digits");
  EXPECT_EQ(again.pixels, first->pixels) << "the trials of a search share one copy";
  EXPECT_EQ(again.labels, first->labels);
  EXPECT_EQ(again.class_names, first->class_names);
  EXPECT_EQ(again.memory_index, first->memory_index);
  dir.write("i", idx_images(6, 2, 2));
  dir.write("l", idx_labels({1, 1, 0, 2, 0, 3}));
  const Dataset changed = open_idx(ipath, lpath, "digits");
  EXPECT_NE(changed.pixels, first->pixels);
  EXPECT_EQ(changed.size(), 6u);
  first.reset();
  const Dataset after = open_idx(ipath, lpath, "digits");
  EXPECT_EQ(after.pixels, changed.pixels);
}

TEST(Idx, MalformedFilesAreDataErrorsNamingTheFile) {
  TempDir dir;
  const auto images = idx_images(4, 2, 3);
  const auto good_images = dir.write("good-images", images);
  const auto good_labels = dir.write("good-labels", idx_labels({0, 1, 2, 3}));

  // Wrong magic: the label file given as the image file, and a random magic.
  auto m = data_error([&] { open_idx(good_labels, good_labels, "x"); }, good_labels);
  EXPECT_NE(m.find("magic"), std::string::npos) << m;
  const auto bad_magic = dir.write("bad-magic", idx_images(4, 2, 3, 0x12345678));
  m = data_error([&] { open_idx(bad_magic, good_labels, "x"); }, bad_magic);
  EXPECT_NE(m.find("0x12345678"), std::string::npos) << m;
  EXPECT_NE(m.find("0x00000803"), std::string::npos) << m;

  // Truncated pixel data, plain and gzipped: expected vs found bytes.
  const auto cut = dir.write("cut-images", Bytes(images.begin(), images.end() - 5));
  m = data_error([&] { open_idx(cut, good_labels, "x"); }, cut);
  EXPECT_NE(m.find("24"), std::string::npos) << m;
  EXPECT_NE(m.find("19"), std::string::npos) << m;
  const auto cut_gz = write_gz(dir.path() / "cut-images.gz", Bytes(images.begin(), images.end() - 5));
  m = data_error([&] { open_idx(cut_gz, good_labels, "x"); }, cut_gz);
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;

  // A gzip stream cut in the middle.
  const auto big_gz = write_gz(dir.path() / "big.gz", idx_images(200, 28, 28));
  Bytes compressed = read_bytes(big_gz);
  compressed.resize(compressed.size() / 2);
  const auto half_gz = dir.write("half.gz", compressed);
  std::vector<std::uint8_t> many_labels(200, 1);
  const auto many = dir.write("many-labels", idx_labels(many_labels));
  m = data_error([&] { open_idx(half_gz, many, "x"); }, half_gz);
  EXPECT_NE(m.find("truncated"), std::string::npos) << m;

  // Truncated header.
  const auto stub = dir.write("stub", Bytes(images.begin(), images.begin() + 6));
  data_error([&] { open_idx(stub, good_labels, "x"); }, stub);

  // Counts that disagree.
  const auto three_labels = dir.write("three-labels", idx_labels({0, 1, 2}));
  m = data_error([&] { open_idx(good_images, three_labels, "x"); }, three_labels);
  EXPECT_NE(m.find("3 labels"), std::string::npos) << m;
  EXPECT_NE(m.find("4 images"), std::string::npos) << m;

  // Image sides out of range.
  const auto huge = dir.write("huge", idx_images(0, 5000, 2));
  data_error([&] { open_idx(huge, good_labels, "x"); }, huge);

  // A Fashion-MNIST label outside its 10 classes.
  const auto eleven = dir.write("eleven", idx_labels({0, 1, 11, 3}));
  data_error([&] { open_idx(good_images, eleven, "fashion-mnist:train"); }, eleven);
  EXPECT_EQ(open_idx(good_images, eleven, "digits").class_names.size(), 12u);

  EXPECT_THROW(open_idx(dir.path() / "missing", good_labels, "x"), IoError);
}

// ---------------------------------------------------------------------------------------------
// open_dataset

TEST(Dataset, FashionMnistFromEnvironmentFolder) {
  TempDir dir;
  write_tiny_fashion(dir.path() / "fm", 2);
  ScopedEnv env("AUGFLOW_FASHION_MNIST_DIR", (dir.path() / "fm").c_str());
  for (const char* source : {"fashion-mnist", "fashion-mnist:train"}) {
    const Dataset train = open_dataset(source);
    EXPECT_EQ(train.name, "fashion-mnist:train");
    EXPECT_EQ(train.size(), 20u);
    EXPECT_EQ(train.class_names[7], "Sneaker");
    EXPECT_EQ(train.class_counts(), std::vector<std::size_t>(10, 2));
    EXPECT_EQ(train.describe(5), "fashion-mnist:train#5");
  }
  const Dataset test = open_dataset("fashion-mnist:test");
  EXPECT_EQ(test.name, "fashion-mnist:test");
  EXPECT_EQ(test.labels, (std::vector<int>{9, 0, 5}));
  EXPECT_EQ(test.class_names.size(), 10u);
  EXPECT_THROW(open_dataset("fashion-mnist:valid"), ConfigError);
}

TEST(Dataset, MissingFashionMnistNamesThePackage) {
  TempDir dir;
  ScopedEnv env("AUGFLOW_FASHION_MNIST_DIR", dir.path().c_str());
  for (const char* source : {"fashion-mnist", "fashion-mnist:test"}) {
    try {
      open_dataset(source);
      ADD_FAILURE() << "expected DataError";
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find("dataset-fashion-mnist"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("apt-get install"), std::string::npos) << e.what();
    }
  }
}

TEST(Dataset, RealFashionMnistWhenInstalled) {
  if (!fs::is_directory(kFashionMnistDir)) GTEST_SKIP() << kFashionMnistDir << " is not there";
  ScopedEnv env("AUGFLOW_FASHION_MNIST_DIR", nullptr);
  const Dataset train = open_dataset("fashion-mnist");
  const Dataset test = open_dataset("fashion-mnist:test");
  EXPECT_EQ(train.size(), 60000u);
  EXPECT_EQ(test.size(), 10000u);
  for (const Dataset* d : {&train, &test}) {
    EXPECT_EQ(d->rows, 28);
    EXPECT_EQ(d->cols, 28);
    EXPECT_EQ(d->channels, 1);
    EXPECT_EQ(d->class_names.size(), 10u);
    EXPECT_TRUE(std::all_of(d->labels.begin(), d->labels.end(), [](int l) { return l >= 0 && l <= 9; }));
  }
  EXPECT_EQ(train.class_counts(), std::vector<std::size_t>(10, 6000));
  EXPECT_EQ(test.class_counts(), std::vector<std::size_t>(10, 1000));
  EXPECT_EQ(train.image(59999).size(), cv::Size(28, 28));
}

TEST(Dataset, SourceDispatch) {
  TempDir dir;
  write_image(dir, "folder/cat/1.png");
  dir.write("list.CSV", text_bytes("a.jpg,cat\n"));
  dir.write("list.lst", text_bytes("a.jpg,0\n"));
  write_image(dir, "image.png");
  EXPECT_EQ(open_dataset((dir.path() / "folder").string()).class_names, std::vector<std::string>{"cat"});
  EXPECT_EQ(open_dataset((dir.path() / "list.CSV").string()).class_names, std::vector<std::string>{"cat"});
  EXPECT_EQ(open_dataset((dir.path() / "list.lst").string()).class_names, std::vector<std::string>{"0"});
  try {
    open_dataset((dir.path() / "image.png").string());
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("fashion-mnist"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(".csv"), std::string::npos) << e.what();
  }
  try {
    open_dataset((dir.path() / "nowhere").string());
    ADD_FAILURE() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("nowhere"), std::string::npos) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// List files

TEST(ListFile, NamesHeaderCommentsRelativePaths) {
  TempDir dir;
  const auto list = dir.write("lists/train.csv", text_bytes("path,label\r\n"
                                                            "# a comment\n"
                                                            "\n"
                                                            "imgs/a.jpg,dog\r\n"
                                                            "/abs/b, with comma.png,cat\n"
                                                            "  c.jpg , dog  \n"
                                                            "\"q.jpg\",\"bird\"\n"));
  const Dataset d = open_list_file(list);
  EXPECT_EQ(d.name, list.string());
  EXPECT_EQ(d.channels, 3);
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"bird", "cat", "dog"}));
  EXPECT_EQ(d.labels, (std::vector<int>{2, 1, 2, 0}));
  const fs::path base = dir.path() / "lists";
  EXPECT_EQ(strings(d.paths), (std::vector<std::string>{(base / "imgs/a.jpg").string(), "/abs/b, with comma.png",
                                                        (base / "c.jpg").string(), (base / "q.jpg").string()}));
}

TEST(ListFile, NumbersAreClassIds) {
  TempDir dir;
  const auto list = dir.write("l.txt", text_bytes("a.jpg,2\nb.jpg,0\nc.jpg,2\n"));
  Warnings w;
  const Dataset d = open_list_file(list, w.sink());
  EXPECT_EQ(d.class_names, (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_EQ(d.labels, (std::vector<int>{2, 0, 2}));
  EXPECT_EQ(d.class_counts(), (std::vector<std::size_t>{1, 0, 2}));
  EXPECT_EQ(w.count("class 1"), 1u) << w.all();
}

TEST(ListFile, MalformedLinesNameTheLine) {
  TempDir dir;
  const auto no_comma = dir.write("a.txt", text_bytes("# header comment\na.jpg,cat\nno comma here\n"));
  auto m = data_error([&] { open_list_file(no_comma); }, no_comma);
  EXPECT_NE(m.find("line 3"), std::string::npos) << m;
  const auto mixed = dir.write("b.txt", text_bytes("a.jpg,1\nb.jpg,cat\n"));
  m = data_error([&] { open_list_file(mixed); }, mixed);
  EXPECT_NE(m.find("line 2"), std::string::npos) << m;
  const auto negative = dir.write("c.txt", text_bytes("a.jpg,-1\n"));
  m = data_error([&] { open_list_file(negative); }, negative);
  EXPECT_NE(m.find("line 1"), std::string::npos) << m;
  const auto no_label = dir.write("d.txt", text_bytes("a.jpg,\n"));
  data_error([&] { open_list_file(no_label); }, no_label);
  const auto empty = dir.write("e.csv", text_bytes("path,label\n# nothing\n\n"));
  data_error([&] { open_list_file(empty); }, empty);
  EXPECT_THROW(open_list_file(dir.path() / "missing.csv"), IoError);
}

// ---------------------------------------------------------------------------------------------
// Split

/// A file-backed data set with `sizes[c]` samples of class c, classes interleaved.
Dataset synthetic(const std::vector<int>& sizes) {
  Dataset d;
  d.name = "synthetic";
  for (std::size_t c = 0; c < sizes.size(); ++c) d.class_names.push_back(std::string("c").append(std::to_string(c)));
  std::vector<int> left = sizes;
  for (bool any = true; any;) {
    any = false;
    for (std::size_t c = 0; c < sizes.size(); ++c)
      if (left[c] > 0) {
        --left[c];
        any = true;
        d.labels.push_back(static_cast<int>(c));
        d.paths.push_back(std::string("s").append(std::to_string(d.paths.size())).append(".png"));
      }
  }
  return d;
}

/// Index of each sample of `part` in `whole` (paths are unique).
std::vector<std::size_t> positions(const Dataset& part, const Dataset& whole) {
  std::vector<std::size_t> out;
  for (const auto& p : part.paths)
    out.push_back(static_cast<std::size_t>(std::find(whole.paths.begin(), whole.paths.end(), p) - whole.paths.begin()));
  return out;
}

TEST(Split, StratifiedDeterministicDisjointComplete) {
  const std::vector<int> sizes{10, 7, 3, 2, 1, 40};
  const Dataset d = synthetic(sizes);
  const double f = 0.3;
  const Split a = split_stratified(d, f, 42);
  const Split b = split_stratified(d, f, 42);
  EXPECT_EQ(a.train.paths, b.train.paths);
  EXPECT_EQ(a.val.paths, b.val.paths);

  const auto train_counts = a.train.class_counts();
  const auto val_counts = a.val.class_counts();
  for (std::size_t c = 0; c < sizes.size(); ++c) {
    SCOPED_TRACE("class " + std::to_string(c));
    EXPECT_EQ(train_counts[c] + val_counts[c], static_cast<std::size_t>(sizes[c]));
    EXPECT_LE(std::abs(static_cast<double>(val_counts[c]) - f * sizes[c]), 1.0);
    if (sizes[c] >= 2) {
      EXPECT_GE(train_counts[c], 1u);
      EXPECT_GE(val_counts[c], 1u);
    } else {
      EXPECT_EQ(val_counts[c], 0u);
    }
  }
  EXPECT_EQ(val_counts[5], 12u);  // round(0.3 * 40)

  // Disjoint, together everything, each in the original order.
  const auto ti = positions(a.train, d);
  const auto vi = positions(a.val, d);
  EXPECT_TRUE(std::is_sorted(ti.begin(), ti.end()));
  EXPECT_TRUE(std::is_sorted(vi.begin(), vi.end()));
  std::set<std::size_t> all(ti.begin(), ti.end());
  all.insert(vi.begin(), vi.end());
  EXPECT_EQ(all.size(), d.size());
  EXPECT_EQ(ti.size() + vi.size(), d.size());
  for (std::size_t k = 0; k < ti.size(); ++k) EXPECT_EQ(a.train.labels[k], d.labels[ti[k]]);
  EXPECT_EQ(a.train.class_names, d.class_names);

  const Split other = split_stratified(d, f, 43);
  EXPECT_NE(other.val.paths, a.val.paths);
}

TEST(Split, InMemoryPartsSharePixels) {
  TempDir dir;
  const auto ipath = dir.write("i", idx_images(20, 2, 2));
  std::vector<std::uint8_t> labels;
  for (int i = 0; i < 20; ++i) labels.push_back(static_cast<std::uint8_t>(i % 2));
  const auto lpath = dir.write("l", idx_labels(labels));
  const Dataset d = open_idx(ipath, lpath, "tiny");
  const Split s = split_stratified(d, 0.25, 7);
  EXPECT_EQ(s.train.pixels, d.pixels);
  EXPECT_EQ(s.val.pixels, d.pixels);
  EXPECT_EQ(s.val.size(), 6u);  // round(0.25 * 10) = 3 per class (2.5 rounds away from zero)
  EXPECT_EQ(s.train.size(), 14u);
  for (std::size_t i = 0; i < s.val.size(); ++i) {
    const auto original = s.val.memory_index[i];
    EXPECT_EQ(s.val.describe(i), "tiny#" + std::to_string(original));
    EXPECT_EQ(s.val.image(i).data, d.image(original).data);
    EXPECT_EQ(s.val.labels[i], d.labels[original]);
  }
}

TEST(Split, FractionOutsideOpenIntervalIsAConfigError) {
  const Dataset d = synthetic({4, 4});
  for (const double f : {0.0, 1.0, -0.1, 1.5, std::numeric_limits<double>::quiet_NaN()})
    EXPECT_THROW(split_stratified(d, f, 1), ConfigError) << f;
}

}  // namespace
}  // namespace augflow::pipeline
