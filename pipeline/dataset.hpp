// Data sets: what the loader streams. A data set is a list of samples with class labels; a
// sample is either an image file (decoded on demand, by the loader) or an 8-bit image held in
// memory (IDX files, which are small and gzipped, so they cannot be read piecewise).
//
// Sources (open_dataset):
// - an image folder in torchvision's ImageFolder layout: one sub-folder per class, class ids
//   by sorted folder name, images found recursively;
// - a list file (`path,label` per line) for data that is not laid out in folders;
// - IDX files (MNIST, Fashion-MNIST), gzipped or not; `fashion-mnist` and
//   `fashion-mnist:test` name Debian's dataset-fashion-mnist files.
// Listing never decodes: files that turn out to be unusable are found, reported and excluded
// by the loader (loader.hpp).
//
// API: public, part of augflow::loader; installed as <augflow/pipeline/dataset.hpp>.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace augflow::pipeline {

/// Receives warnings for a person (empty class folders, skipped symbolic-link loops, ...).
using WarningSink = std::function<void(const std::string&)>;

/// Debian's dataset-fashion-mnist puts the four IDX files here.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

struct Dataset {
  std::string name;                      ///< for messages: the folder, list file or "fashion-mnist:train"
  std::vector<std::string> class_names;  ///< index = class id; ids never shift when a class is empty
  int channels = 3;                      ///< what samples decode to: 3 for image files, 1 for IDX
  std::vector<int> labels;               ///< one class id per sample

  /// File-backed samples: one path per sample (empty for in-memory data sets).
  std::vector<std::filesystem::path> paths;

  /// In-memory samples (IDX): `image_count` images of rows x cols bytes, back to back.
  std::shared_ptr<const std::vector<std::uint8_t>> pixels;
  int rows = 0;
  int cols = 0;
  /// Sample i is in-memory image memory_index[i] (lets subsets share the pixels).
  std::vector<std::uint32_t> memory_index;

  std::size_t size() const { return labels.size(); }
  bool in_memory() const { return pixels != nullptr; }
  /// In-memory sample i as an 8-bit single-channel view of the shared pixels (no copy). The
  /// view is valid while `pixels` lives; do not write into it. Throws Error when misused.
  cv::Mat image(std::size_t i) const;
  /// Asks the CPU to start loading in-memory sample i's pixels (a hint: nothing for files or an
  /// index out of range). Shuffled samples are scattered over tens of MB, so a loader that
  /// knows which sample comes next hides the cache misses behind the current one.
  void prefetch(std::size_t i) const;
  /// The sample for messages: its path, or "fashion-mnist:train#123".
  std::string describe(std::size_t i) const;
  /// The samples at `indices`, in that order (sharing in-memory pixels).
  Dataset subset(const std::vector<std::size_t>& indices) const;
  /// Samples per class id.
  std::vector<std::size_t> class_counts() const;
};

/// ImageFolder layout. Image extensions as torchvision counts them (jpg jpeg png bmp webp tif
/// tiff gif ppm pgm, any case); other files and hidden files/folders are ignored. Symbolic
/// links to folders are followed unless they lead back into a folder already being walked or
/// already walked (no loops, no duplicates; each such link gets a warning). A class folder
/// without images gets a warning naming it and keeps its id. Samples are sorted by class, then
/// path. Throws IoError if `root` is missing or unreadable, DataError if it has no class
/// folder or no image at all.
Dataset open_image_folder(const std::filesystem::path& root, const WarningSink& warn = {});

/// A list file: one `path,label` per line; blank lines and lines starting with '#' are
/// skipped, as is a first line `path,label`. Relative paths are relative to the list file's
/// folder. Labels are either all whole numbers >= 0 (used as class ids; names are the numbers)
/// or all names (ids by sorted name). A malformed line throws DataError naming file and line.
Dataset open_list_file(const std::filesystem::path& list, const WarningSink& warn = {});

/// One line of a list file, as read_list_lines gives it.
struct ListLine {
  std::filesystem::path path;  ///< relative paths resolved against the list file's folder
  std::string label;           ///< the text after the path's comma; "" when there is none
  std::size_t line = 0;        ///< line number, for messages
};

/// The lines of a list file, the one parser open_list_file and augflow predict share: blank
/// lines and lines starting with '#' skipped, a first line `path,label` (or `path` when labels
/// are optional) skipped as a header, a UTF-8 byte-order mark ignored. The label is after the
/// last comma outside double quotes, so paths may contain commas; a field in double quotes is
/// unquoted. With `label_required`, a line without a label throws DataError naming file and
/// line. Throws IoError when the file cannot be read, DataError when it lists nothing.
std::vector<ListLine> read_list_lines(const std::filesystem::path& list, bool label_required);

/// IDX image and label files (MNIST format, gzipped if the name ends in .gz). Checks magic
/// numbers, dimensions, that the counts agree and that the files are complete; throws DataError
/// naming the file and what is wrong. Class names are "0".."9" (Fashion-MNIST: its names).
/// Opening the same unchanged files again while an earlier result is alive shares its pixels
/// (the trials of a search open the same data over and over).
Dataset open_idx(const std::filesystem::path& images, const std::filesystem::path& labels,
                 std::string name);

/// The same from the two files' bytes (open_idx reads the files and calls this; the fuzzer
/// calls it directly). `images` and `labels` name the sources in errors.
Dataset open_idx_bytes(std::span<const std::uint8_t> images_data, std::span<const std::uint8_t> labels_data,
                       std::string name, const std::string& images = "images", const std::string& labels = "labels");

/// A source as the command line names it: "fashion-mnist" (= "fashion-mnist:train"),
/// "fashion-mnist:test", a folder (ImageFolder), or a list file (.csv, .txt, .lst). The name
/// fashion-mnist always means the Debian data set: write ./fashion-mnist for a local folder.
/// When Debian's Fashion-MNIST is absent the error names the package to install.
/// The folder holding the Fashion-MNIST files can be overridden with the environment
/// variable AUGFLOW_FASHION_MNIST_DIR (tests use it).
Dataset open_dataset(const std::string& source, const WarningSink& warn = {});

struct Split {
  Dataset train;
  Dataset val;
};

/// Stratified split: from each class, round(val_fraction * count) samples, chosen by a shuffle
/// that depends only on `seed`, go to val; the rest to train (both keep the original order).
/// Clamped so that a class with 2 or more samples has at least one on each side; a class with
/// one sample goes to train.
/// Throws ConfigError unless 0 < val_fraction < 1.
Split split_stratified(const Dataset& data, double val_fraction, std::uint64_t seed);

/// A short digest of data sets' listing (sample count, classes, labels, paths), e.g. "60000
/// samples, listing 3f2a...": what the processes of a job compare to be sure they see the same data.
std::string listing_digest(const std::vector<Dataset>& sets);

}  // namespace augflow::pipeline
