// Data sets: image folders, list files and IDX files (see dataset.hpp for the contract).
#include "pipeline/dataset.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <string_view>
#include <system_error>
#include <utility>

#include <zlib.h>

#include "common/rng.hpp"
#include "common/error.hpp"
#include "augment/decode.hpp"
#include "pipeline/image_files.hpp"

namespace augflow::pipeline {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Dataset

// The view points into the shared pixels: it stays valid while any Dataset sharing them (this
// one, a subset, a copy) is alive. cv::Mat has no read-only view type, hence the const_cast;
// callers must not write into the view (copy it first, as every transform does).
cv::Mat Dataset::image(std::size_t i) const {
  if (!in_memory()) throw Error(name + ": image(" + std::to_string(i) + ") on a data set of image files");
  if (i >= size() || i >= memory_index.size())
    throw Error(name + ": sample " + std::to_string(i) + " out of range (size " + std::to_string(size()) + ")");
  const std::size_t bytes = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  const std::size_t offset = static_cast<std::size_t>(memory_index[i]) * bytes;
  if (offset + bytes > pixels->size())
    throw Error(name + ": in-memory image " + std::to_string(memory_index[i]) + " lies outside the pixels");
  return cv::Mat(rows, cols, CV_8UC1, const_cast<std::uint8_t*>(pixels->data() + offset));
}

void Dataset::prefetch(std::size_t i) const {
  if (!in_memory() || i >= memory_index.size()) return;
  const std::size_t bytes = static_cast<std::size_t>(rows) * static_cast<std::size_t>(cols);
  const std::size_t offset = static_cast<std::size_t>(memory_index[i]) * bytes;
  if (offset + bytes > pixels->size()) return;
  constexpr std::size_t kLine = 64;
  for (std::size_t at = 0; at < bytes; at += kLine) __builtin_prefetch(pixels->data() + offset + at);
}

std::string Dataset::describe(std::size_t i) const {
  if (in_memory() && i < memory_index.size()) return name + "#" + std::to_string(memory_index[i]);
  if (i < paths.size()) return paths[i].string();
  return name + "#" + std::to_string(i);
}

Dataset Dataset::subset(const std::vector<std::size_t>& indices) const {
  Dataset out;
  out.name = name;
  out.class_names = class_names;
  out.channels = channels;
  out.pixels = pixels;
  out.rows = rows;
  out.cols = cols;
  out.labels.reserve(indices.size());
  if (!paths.empty()) out.paths.reserve(indices.size());
  if (!memory_index.empty()) out.memory_index.reserve(indices.size());
  for (const std::size_t i : indices) {
    if (i >= size())
      throw Error(name + ": subset index " + std::to_string(i) + " out of range (size " + std::to_string(size()) + ")");
    out.labels.push_back(labels[i]);
    if (!paths.empty()) out.paths.push_back(paths[i]);
    if (!memory_index.empty()) out.memory_index.push_back(memory_index[i]);
  }
  return out;
}

std::vector<std::size_t> Dataset::class_counts() const {
  std::vector<std::size_t> counts(class_names.size(), 0);
  for (const int label : labels) {
    if (label < 0) continue;
    if (static_cast<std::size_t>(label) >= counts.size()) counts.resize(static_cast<std::size_t>(label) + 1, 0);
    ++counts[static_cast<std::size_t>(label)];
  }
  return counts;
}

namespace {

void emit(const WarningSink& warn, const std::string& message) {
  if (warn) warn(message);
}

std::string plural(std::size_t n, const std::string& word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Image folders

Dataset open_image_folder(const fs::path& root, const WarningSink& warn) {
  ImageTreeWalker walker(warn);
  const auto listing = walker.open_root(root);  // IoError when missing or unreadable

  if (!listing.files.empty()) {
    const auto images = static_cast<std::size_t>(
        std::count_if(listing.files.begin(), listing.files.end(), [](const fs::path& p) { return has_image_extension(p); }));
    emit(warn, "ignoring " + plural(listing.files.size(), "file") + " directly in '" + root.string() + "' (" +
                   std::to_string(images) + " of them images): an image folder takes images only from its "
                   "class sub-folders");
  }
  if (listing.folders.empty())
    throw DataError(root.string(), "no class folders: an image folder holds one sub-folder per class, "
                                   "e.g. " + (root / "cat" / "1.jpg").string());

  Dataset data;
  data.name = root.string();
  data.channels = 3;
  for (const auto& folder : listing.folders) {  // sorted by name: the class ids
    const int id = static_cast<int>(data.class_names.size());
    data.class_names.push_back(folder.filename().string());
    std::vector<fs::path> files;
    walker.walk(folder, files);
    sort_by_path_string(files);
    if (files.empty())
      emit(warn, "class folder '" + folder.filename().string() + "' has no images; it keeps class id " +
                     std::to_string(id));
    for (auto& file : files) {
      data.paths.push_back(std::move(file));
      data.labels.push_back(id);
    }
  }
  if (data.paths.empty())
    throw DataError(root.string(), "no image files in any of its " + plural(data.class_names.size(), "class folder") +
                                       " (extensions jpg jpeg png bmp webp tif tiff gif ppm pgm)");
  return data;
}

// ---------------------------------------------------------------------------------------------
// List files

namespace {

std::string_view trim(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

/// A field without the double quotes a spreadsheet may put around it ("" inside is one ").
std::string unquote(std::string_view s) {
  if (s.size() < 2 || s.front() != '"' || s.back() != '"') return std::string(s);
  std::string out;
  for (std::size_t i = 1; i + 1 < s.size(); ++i) {
    out += s[i];
    if (s[i] == '"' && i + 2 < s.size() && s[i + 1] == '"') ++i;
  }
  return out;
}

bool all_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c); });
}

/// Largest class id a list file may use: class names are allocated for every id up to it.
constexpr unsigned long kMaxListClassId = 99999;

/// The value of an all-digits label, or kMaxListClassId + 1 when it is larger than allowed.
unsigned long parse_class_id(const std::string& digits) {
  unsigned long value = 0;
  for (const char c : digits) {
    value = value * 10 + static_cast<unsigned long>(c - '0');
    if (value > kMaxListClassId) return kMaxListClassId + 1;
  }
  return value;
}

}  // namespace

namespace {

/// Where the label starts: the last comma outside double quotes (so paths may contain commas,
/// and a quoted path may contain them even when no label follows), or npos.
std::size_t label_comma(std::string_view line) {
  bool quoted = false;
  std::size_t comma = std::string_view::npos;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '"') quoted = !quoted;
    else if (line[i] == ',' && !quoted) comma = i;
  }
  return comma;
}

}  // namespace

std::vector<ListLine> read_list_lines(const fs::path& list, bool label_required) {
  std::error_code ec;
  if (!fs::exists(list, ec)) throw IoError(list.string() + ": no such file");
  if (fs::is_directory(list, ec)) throw IoError(list.string() + ": is a folder, not a list file");
  std::ifstream in(list, std::ios::binary);
  if (!in) throw IoError(list.string() + ": cannot open list file");

  const fs::path base = list.parent_path();
  std::vector<ListLine> rows;
  std::string text;
  bool first_content = true;
  for (std::size_t number = 1; std::getline(in, text); ++number) {
    std::string_view line = text;
    if (number == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);  // UTF-8 BOM
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    const auto where = [&] { return "line " + std::to_string(number); };
    if (first_content) {
      first_content = false;
      std::string header = lower(std::string(line));
      std::erase(header, ' ');
      if (header == "path,label" || (!label_required && header == "path")) continue;  // the header
    }
    const auto comma = label_comma(line);
    if (comma == std::string_view::npos && label_required)
      throw DataError(list.string(), where() + ": expected `path,label`, found '" + std::string(line) + "'");
    const std::string path = unquote(trim(line.substr(0, comma)));
    const std::string label = comma == std::string_view::npos ? std::string() : unquote(trim(line.substr(comma + 1)));
    if (path.empty()) throw DataError(list.string(), where() + ": the path is empty");
    if (label.empty() && label_required) throw DataError(list.string(), where() + ": the label is empty");
    fs::path file(path);
    if (file.is_relative()) file = base / file;
    rows.push_back({file.lexically_normal(), label, number});
  }
  if (in.bad()) throw IoError(list.string() + ": read error");
  if (rows.empty())
    throw DataError(list.string(), label_required ? "no samples: expected one `path,label` line per sample"
                                                  : "no images: expected one path per line");
  return rows;
}

Dataset open_list_file(const fs::path& list, const WarningSink& warn) {
  std::vector<ListLine> rows = read_list_lines(list, true);
  bool numeric = true;
  std::size_t first_line = 0;  // line of the first sample, which decides numbers vs names
  for (const auto& row : rows) {
    const std::string& label = row.label;
    const auto where = [&] { return "line " + std::to_string(row.line); };
    const bool is_number = all_digits(label);
    if (first_line == 0) {
      numeric = is_number;
      first_line = row.line;
    } else if (is_number != numeric) {
      throw DataError(list.string(), where() + ": label '" + label + "' is " + (is_number ? "a number" : "a name") +
                                         " but the label on line " + std::to_string(first_line) + " is " +
                                         (numeric ? "a number" : "a name") +
                                         "; labels must be all class ids (0, 1, ...) or all class names");
    }
    if (is_number && parse_class_id(label) > kMaxListClassId)
      throw DataError(list.string(), where() + ": class id " + label + " is too large (at most " +
                                         std::to_string(kMaxListClassId) + ")");
    if (!is_number && (label.front() == '-' || label.front() == '+') && label.size() > 1 &&
        all_digits(label.substr(1)))
      throw DataError(list.string(), where() + ": class id " + label + " is not a whole number >= 0");
  }

  Dataset data;
  data.name = list.string();
  data.channels = 3;
  data.paths.reserve(rows.size());
  data.labels.reserve(rows.size());
  if (numeric) {
    unsigned long max_id = 0;
    for (const auto& row : rows) max_id = std::max(max_id, parse_class_id(row.label));
    for (unsigned long id = 0; id <= max_id; ++id) data.class_names.push_back(std::to_string(id));
    std::vector<bool> used(max_id + 1, false);
    for (auto& row : rows) {
      const auto id = parse_class_id(row.label);
      used[id] = true;
      data.paths.push_back(std::move(row.path));
      data.labels.push_back(static_cast<int>(id));
    }
    for (unsigned long id = 0; id <= max_id; ++id)
      if (!used[id]) emit(warn, list.string() + ": class " + std::to_string(id) + " has no samples; ids are kept");
  } else {
    std::map<std::string, int> ids;
    for (const auto& row : rows) ids.emplace(row.label, 0);
    for (auto& [label, id] : ids) {  // std::map iterates in sorted order
      id = static_cast<int>(data.class_names.size());
      data.class_names.push_back(label);
    }
    for (auto& row : rows) {
      data.labels.push_back(ids.at(row.label));
      data.paths.push_back(std::move(row.path));
    }
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// IDX

namespace {

constexpr std::uint32_t kIdxImagesMagic = 0x00000803;  // unsigned bytes, 3 dimensions
constexpr std::uint32_t kIdxLabelsMagic = 0x00000801;  // unsigned bytes, 1 dimension
constexpr std::uint32_t kIdxMaxSide = 4096;

const std::array<const char*, 10> kFashionMnistClasses{
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/// Reads IDX data from memory, gzip-compressed (one or more members, as gzip writes them) or
/// plain, as zlib's gzread would read the file.
class IdxReader {
 public:
  IdxReader(std::span<const std::uint8_t> bytes, std::string name) : bytes_(bytes), name_(std::move(name)) {
    gzip_ = bytes.size() >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B;
    if (gzip_) {
      if (inflateInit2(&stream_, 15 + 16) != Z_OK) throw Error("zlib: inflateInit2 failed");
      stream_ready_ = true;
    }
  }
  ~IdxReader() {
    if (stream_ready_) inflateEnd(&stream_);
  }
  IdxReader(const IdxReader&) = delete;
  IdxReader& operator=(const IdxReader&) = delete;

  /// Reads up to `size` bytes; returns how many were read (fewer only at the end of the data).
  std::size_t read(std::uint8_t* out, std::size_t size) {
    if (!gzip_) {
      const std::size_t n = std::min(size, bytes_.size() - offset_);
      if (n) std::memcpy(out, bytes_.data() + offset_, n);
      offset_ += n;
      return n;
    }
    std::size_t done = 0;
    while (done < size && !finished_) {
      if (stream_.avail_in == 0 && offset_ < bytes_.size()) {
        const auto chunk = std::min<std::size_t>(bytes_.size() - offset_, 1u << 30);
        stream_.next_in = const_cast<Bytef*>(bytes_.data() + offset_);
        stream_.avail_in = static_cast<uInt>(chunk);
        offset_ += chunk;
      }
      const auto room = std::min<std::size_t>(size - done, 1u << 30);
      stream_.next_out = out + done;
      stream_.avail_out = static_cast<uInt>(room);
      const int rc = inflate(&stream_, Z_NO_FLUSH);
      done += room - stream_.avail_out;
      if (rc == Z_STREAM_END) {
        // Another gzip member may follow (concatenated files); anything else is ignored.
        const std::size_t rest = stream_.avail_in + (bytes_.size() - offset_);
        const std::uint8_t* next = stream_.avail_in ? stream_.next_in : bytes_.data() + offset_;
        if (rest >= 2 && next[0] == 0x1F && next[1] == 0x8B) {
          inflateReset(&stream_);
        } else {
          finished_ = true;
        }
      } else if (rc == Z_BUF_ERROR && stream_.avail_in == 0 && offset_ == bytes_.size()) {
        set_error("unexpected end of file");
        finished_ = true;
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        set_error(stream_.msg ? stream_.msg : "corrupt gzip data");
        finished_ = true;
      }
    }
    return done;
  }

  std::uint32_t read_u32(const char* what) {
    std::uint8_t b[4];
    const auto n = read(b, 4);
    if (n != 4) fail("the file ends inside the header (" + std::string(what) + ")");
    return (std::uint32_t(b[0]) << 24) | (std::uint32_t(b[1]) << 16) | (std::uint32_t(b[2]) << 8) | b[3];
  }

  /// Checks the magic number: zero bytes, unsigned-byte element type, `dims` dimensions.
  void check_magic(std::uint32_t expected, const char* kind) {
    const std::uint32_t magic = read_u32("magic number");
    if (magic == expected) return;
    char found[16];
    std::snprintf(found, sizeof found, "0x%08X", magic);
    char wanted[16];
    std::snprintf(wanted, sizeof wanted, "0x%08X", expected);
    std::string why = std::string("not an IDX ") + kind + " file: magic number " + found + ", expected " + wanted;
    if ((magic >> 16) == 0x1F8B || (magic >> 16) == 0x8B1F) why += " (the data is gzip-compressed twice?)";
    else if (magic == kIdxImagesMagic) why += " (this is an IDX image file)";
    else if (magic == kIdxLabelsMagic) why += " (this is an IDX label file)";
    else if ((magic >> 16) == 0 && ((magic >> 8) & 0xFF) != 0x08)
      why += " (element type " + std::to_string((magic >> 8) & 0xFF) + "; only unsigned bytes, 0x08, are supported)";
    else if ((magic >> 16) == 0 && (magic & 0xFF) != (expected & 0xFF))
      why += " (" + std::to_string(magic & 0xFF) + " dimensions, expected " + std::to_string(expected & 0xFF) + ")";
    fail(why);
  }

  /// Reads exactly `bytes` bytes of data, growing the buffer as data arrives, so a header that
  /// claims more than the file holds gives "truncated" rather than a huge allocation.
  std::vector<std::uint8_t> read_data(std::uint64_t bytes, const char* what) {
    std::vector<std::uint8_t> data;
    // Plain data: what is left is known, so a header that lies is caught before allocating.
    if (!gzip_ && bytes > bytes_.size() - offset_)
      fail(std::string("truncated: the header promises ") + std::to_string(bytes) + " bytes of " + what + ", found " +
           std::to_string(bytes_.size() - offset_));
    if (!gzip_) data.reserve(static_cast<std::size_t>(bytes));
    while (data.size() < bytes) {
      const auto old = data.size();
      // Gzip data: grow geometrically (1 MB, then doubling, at most 64 MB a step), so a small
      // file whose header claims gigabytes fails after a small allocation.
      const auto step = std::max<std::uint64_t>(std::uint64_t{1} << 20, old);
      const auto chunk = static_cast<std::size_t>(
          std::min<std::uint64_t>({bytes - old, step, std::uint64_t{1} << 26}));
      data.resize(old + chunk);
      const auto n = read(data.data() + old, chunk);
      if (n < chunk) {
        const std::uint64_t found = old + n;
        std::string why = std::string("truncated: the header promises ") + std::to_string(bytes) + " bytes of " +
                          what + ", found " + std::to_string(found);
        if (!error_.empty()) why += " (" + error_ + ")";
        fail(why);
      }
    }
    return data;
  }

  /// Records zlib's message after a failed read.
  void set_error(const std::string& message) { error_ = message; }

  [[noreturn]] void fail(const std::string& reason) const {
    if (!error_.empty() && reason.find(error_) == std::string::npos)
      throw DataError(name_, reason + " (" + error_ + ")");
    throw DataError(name_, reason);
  }

 private:
  std::span<const std::uint8_t> bytes_;
  std::string name_;
  std::size_t offset_ = 0;  ///< next unread input byte
  bool gzip_ = false;
  bool stream_ready_ = false;
  bool finished_ = false;
  z_stream stream_{};
  std::string error_;  ///< zlib's message after a failed read (corrupt or cut gzip data)
};

/// The IDX data sets opened so far. A search opens the same files in every trial, often in
/// parallel: while one opened copy is alive somewhere in the process, another open shares its
/// pixels instead of reading and unzipping them again (47 MB for Fashion-MNIST, about 0.6 s).
/// Keyed by both files' paths, sizes and modification times, so a changed file is read afresh.
struct IdxMemo {
  std::mutex mutex;
  std::map<std::string, std::pair<Dataset, std::weak_ptr<const std::vector<std::uint8_t>>>> entries;
};

IdxMemo& idx_memo() {
  static IdxMemo memo;
  return memo;
}

/// The memo key of an IDX pair, or "" when a file cannot be looked at (the reader reports it).
std::string idx_key(const fs::path& images, const fs::path& labels, const std::string& name) {
  std::string key = name;
  for (const auto& path : {images, labels}) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec) return {};
    const auto time = fs::last_write_time(path, ec);
    if (ec) return {};
    key += "\n" + fs::absolute(path, ec).string() + "\n" + std::to_string(size) + "\n" +
           std::to_string(time.time_since_epoch().count());
  }
  return key;
}

Dataset read_idx(const fs::path& images, const fs::path& labels, std::string name);

}  // namespace

Dataset open_idx(const fs::path& images, const fs::path& labels, std::string name) {
  const std::string key = idx_key(images, labels, name);
  if (key.empty()) return read_idx(images, labels, std::move(name));
  IdxMemo& memo = idx_memo();
  {
    std::lock_guard lock(memo.mutex);
    const auto it = memo.entries.find(key);
    if (it != memo.entries.end())
      if (auto pixels = it->second.second.lock()) {
        Dataset data = it->second.first;
        data.pixels = std::move(pixels);
        return data;
      }
  }
  Dataset data = read_idx(images, labels, std::move(name));
  Dataset entry = data;
  entry.pixels.reset();
  std::lock_guard lock(memo.mutex);
  memo.entries[key] = {std::move(entry), data.pixels};
  return data;
}

namespace {

Dataset read_idx(const fs::path& images, const fs::path& labels, std::string name) {
  std::error_code ec;
  if (!fs::exists(images, ec)) throw IoError(images.string() + ": no such file");
  if (!fs::exists(labels, ec)) throw IoError(labels.string() + ": no such file");
  const auto image_bytes = augment::read_file(images);
  const auto label_bytes = augment::read_file(labels);
  return open_idx_bytes(image_bytes, label_bytes, std::move(name), images.string(), labels.string());
}

}  // namespace

Dataset open_idx_bytes(std::span<const std::uint8_t> images_data, std::span<const std::uint8_t> labels_data,
                       std::string name, const std::string& images, const std::string& labels) {
  IdxReader image_file(images_data, images);
  image_file.check_magic(kIdxImagesMagic, "image");
  const std::uint32_t count = image_file.read_u32("image count");
  const std::uint32_t rows = image_file.read_u32("rows");
  const std::uint32_t cols = image_file.read_u32("columns");
  if (rows < 1 || rows > kIdxMaxSide || cols < 1 || cols > kIdxMaxSide)
    image_file.fail("images of " + std::to_string(rows) + "x" + std::to_string(cols) +
                    " pixels; rows and columns must be in [1, " + std::to_string(kIdxMaxSide) + "]");
  if (count == 0) image_file.fail("holds no images");

  IdxReader label_file(labels_data, labels);
  label_file.check_magic(kIdxLabelsMagic, "label");
  const std::uint32_t label_count = label_file.read_u32("label count");
  if (label_count != count)
    label_file.fail("holds " + std::to_string(label_count) + " labels but " + images + " holds " +
                    std::to_string(count) + " images");
  // Labels first: they are small, so a mismatch is found before the images are read.
  const auto label_bytes = label_file.read_data(count, "labels");
  auto pixels = image_file.read_data(std::uint64_t{count} * rows * cols, "pixels");

  const bool fashion = name.rfind("fashion-mnist", 0) == 0;
  const int max_label = *std::max_element(label_bytes.begin(), label_bytes.end());
  if (fashion && max_label >= static_cast<int>(kFashionMnistClasses.size())) {
    const auto at = std::find(label_bytes.begin(), label_bytes.end(), static_cast<std::uint8_t>(max_label));
    label_file.fail("label " + std::to_string(max_label) + " at record " + std::to_string(at - label_bytes.begin()) +
                    " is outside Fashion-MNIST's 10 classes");
  }

  Dataset data;
  data.name = std::move(name);
  data.channels = 1;
  if (fashion) data.class_names.assign(kFashionMnistClasses.begin(), kFashionMnistClasses.end());
  else
    for (int id = 0; id <= max_label; ++id) data.class_names.push_back(std::to_string(id));
  data.labels.assign(label_bytes.begin(), label_bytes.end());
  data.pixels = std::make_shared<const std::vector<std::uint8_t>>(std::move(pixels));
  data.rows = static_cast<int>(rows);
  data.cols = static_cast<int>(cols);
  data.memory_index.resize(count);
  std::iota(data.memory_index.begin(), data.memory_index.end(), std::uint32_t{0});
  return data;
}

// ---------------------------------------------------------------------------------------------
// Sources

namespace {

constexpr const char* kInstallHint =
    "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist, or scripts/deps.sh)";

/// `stem` + "-idx?-ubyte.gz" in `dir`, or the uncompressed file when only that exists.
fs::path find_idx(const fs::path& dir, const std::string& stem) {
  const fs::path gz = dir / (stem + ".gz");
  std::error_code ec;
  if (fs::exists(gz, ec)) return gz;
  if (fs::exists(dir / stem, ec)) return dir / stem;
  return {};
}

Dataset open_fashion_mnist(const std::string& split) {
  const char* env = std::getenv("AUGFLOW_FASHION_MNIST_DIR");
  const bool overridden = env && *env;
  const fs::path dir = overridden ? fs::path(env) : fs::path(kFashionMnistDir);
  const std::string prefix = split == "test" ? "t10k" : "train";
  const fs::path images = find_idx(dir, prefix + "-images-idx3-ubyte");
  const fs::path labels = find_idx(dir, prefix + "-labels-idx1-ubyte");
  if (images.empty() || labels.empty()) {
    const std::string missing = (images.empty() ? prefix + "-images-idx3-ubyte.gz" : prefix + "-labels-idx1-ubyte.gz");
    std::string reason = "Fashion-MNIST not found (no " + missing + " here)";
    reason += overridden ? "; this folder comes from AUGFLOW_FASHION_MNIST_DIR: put the files there, or unset "
                           "it and "
                         : "; ";
    throw DataError(dir.string(), reason + kInstallHint);
  }
  return open_idx(images, labels, "fashion-mnist:" + split);
}

const char* kAcceptedSources =
    "a data source is a folder of class sub-folders (ImageFolder layout), a list file of "
    "`path,label` lines (.csv, .txt or .lst), fashion-mnist (= fashion-mnist:train) or fashion-mnist:test";

}  // namespace

Dataset open_dataset(const std::string& source, const WarningSink& warn) {
  if (source.empty()) throw ConfigError(std::string("empty data source: ") + kAcceptedSources);
  if (source == "fashion-mnist" || source == "fashion-mnist:train") return open_fashion_mnist("train");
  if (source == "fashion-mnist:test") return open_fashion_mnist("test");
  if (source.rfind("fashion-mnist:", 0) == 0)
    throw ConfigError("unknown Fashion-MNIST split '" + source.substr(14) +
                      "': use fashion-mnist (= fashion-mnist:train) or fashion-mnist:test");

  const fs::path path(source);
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) throw IoError(source + ": no such file or folder");
  if (fs::is_directory(status)) return open_image_folder(path, warn);
  const std::string ext = lower(path.extension().string());
  if (fs::is_regular_file(status) && (ext == ".csv" || ext == ".txt" || ext == ".lst"))
    return open_list_file(path, warn);
  throw ConfigError("'" + source + "' is not a data source: " + kAcceptedSources);
}

// ---------------------------------------------------------------------------------------------
// Split

namespace {
constexpr std::uint64_t kSplitStream = 0x73706C6974;  // "split": keeps these draws apart from augmentation's
}

Split split_stratified(const Dataset& data, double val_fraction, std::uint64_t seed) {
  if (!(val_fraction > 0.0 && val_fraction < 1.0))
    throw ConfigError("validation fraction " + std::to_string(val_fraction) + " must be in (0, 1), e.g. 0.1");

  std::map<int, std::vector<std::size_t>> by_class;  // sample indices per class, in order
  for (std::size_t i = 0; i < data.size(); ++i) by_class[data.labels[i]].push_back(i);

  std::vector<bool> to_val(data.size(), false);
  for (auto& [label, members] : by_class) {
    const std::size_t n = members.size();
    // round(), clamped so that a class with two or more samples is on both sides (a class
    // missing from val cannot be measured; one missing from train cannot be learnt). A class of
    // one sample goes to train.
    auto k = static_cast<std::size_t>(std::llround(val_fraction * static_cast<double>(n)));
    if (n >= 2) k = std::clamp<std::size_t>(k, 1, n - 1);
    else k = 0;
    // Fisher-Yates with one generator per class: a class's split does not depend on the others.
    augflow::Rng rng({seed, 0, static_cast<std::uint64_t>(static_cast<std::int64_t>(label))}, kSplitStream);
    for (std::size_t i = n; i > 1; --i) {
      const auto j = static_cast<std::size_t>(rng.uniform_int(0, static_cast<std::int64_t>(i) - 1));
      std::swap(members[i - 1], members[j]);
    }
    for (std::size_t i = 0; i < k; ++i) to_val[members[i]] = true;
  }

  std::vector<std::size_t> train, val;
  for (std::size_t i = 0; i < data.size(); ++i) (to_val[i] ? val : train).push_back(i);
  return {data.subset(train), data.subset(val)};
}

std::string listing_digest(const std::vector<Dataset>& sets) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto add = [&](const std::string& text) {
    for (unsigned char ch : text) h = (h ^ ch) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  std::size_t samples = 0;
  for (const auto& d : sets) {
    samples += d.size();
    for (const auto& name : d.class_names) add(name);
    for (int label : d.labels) add(std::to_string(label));
    for (const auto& path : d.paths) add(path.string());
  }
  char text[64];
  std::snprintf(text, sizeof text, "%zu samples, listing %016llx", samples, static_cast<unsigned long long>(h));
  return text;
}

}  // namespace augflow::pipeline
