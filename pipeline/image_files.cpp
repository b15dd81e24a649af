#include "pipeline/image_files.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string_view>
#include <system_error>
#include <utility>

#include "common/error.hpp"

namespace augflow::pipeline {
namespace fs = std::filesystem;

bool has_image_extension(const fs::path& path) {
  static constexpr std::array<std::string_view, 11> kExtensions{
      ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pbm"};
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end();
}

void sort_by_path_string(std::vector<fs::path>& paths) {
  std::sort(paths.begin(), paths.end(),
            [](const fs::path& a, const fs::path& b) { return a.native() < b.native(); });
}

namespace {

bool is_hidden(const fs::path& entry) {
  const std::string name = entry.filename().string();
  return !name.empty() && name[0] == '.';
}

std::string quoted(const fs::path& path) {
  std::string out(1, '\'');  // appended, not "'" + string: GCC 12 gives a false -Wrestrict there
  out += path.string();
  out += '\'';
  return out;
}

/// A folder's non-hidden entries sorted by name; `error` is set when it cannot be read (the
/// entries read before a failure are kept).
std::vector<fs::directory_entry> read_folder(const fs::path& folder, std::error_code& error) {
  std::vector<fs::directory_entry> entries;
  fs::directory_iterator it(folder, error);
  if (error) return entries;
  for (; it != fs::directory_iterator(); it.increment(error)) {
    if (error) break;
    if (!is_hidden(it->path())) entries.push_back(*it);
  }
  std::sort(entries.begin(), entries.end(), [](const fs::directory_entry& a, const fs::directory_entry& b) {
    return a.path().filename().native() < b.path().filename().native();
  });
  return entries;
}

enum class Kind { kFolder, kFile, kOther, kBroken };

/// What an entry leads to, following symbolic links. The directory_entry queries use the type
/// the folder listing already returned, so plain entries cost no extra system call (this matters
/// for folders of a million images); only links are followed with a stat.
Kind kind_of(const fs::directory_entry& entry, bool& is_link) {
  std::error_code ec;
  is_link = entry.is_symlink(ec);
  if (entry.is_directory(ec)) return Kind::kFolder;
  if (entry.is_regular_file(ec)) return Kind::kFile;
  if (is_link && !entry.exists(ec)) return Kind::kBroken;
  return Kind::kOther;
}

}  // namespace

ImageTreeWalker::ImageTreeWalker(WarningSink warn) : warn_(std::move(warn)) {}

void ImageTreeWalker::warn(const std::string& message) const {
  if (warn_) warn_(message);
}

bool ImageTreeWalker::inside_walked(const fs::path& canonical) const {
  for (fs::path p = canonical;; p = p.parent_path()) {
    if (walked_.count(p)) return true;
    if (!p.has_relative_path()) return false;  // reached the root of the file system
  }
}

ImageTreeWalker::Listing ImageTreeWalker::open_root(const fs::path& root) {
  std::error_code ec;
  const fs::file_status status = fs::status(root, ec);
  if (!fs::exists(status)) throw IoError(root.string() + ": no such file or folder");
  if (!fs::is_directory(status)) throw IoError(root.string() + ": not a folder");
  const fs::path canonical = fs::canonical(root, ec);
  if (ec) throw IoError(root.string() + ": cannot resolve path: " + ec.message());
  const auto entries = read_folder(root, ec);
  if (ec) throw IoError(root.string() + ": cannot read folder: " + ec.message());
  walked_.insert(canonical);

  Listing listing;
  for (const auto& entry : entries) {
    bool is_link = false;
    switch (kind_of(entry, is_link)) {
      case Kind::kFolder: listing.folders.push_back(entry.path()); break;
      case Kind::kFile: listing.files.push_back(entry.path()); break;
      case Kind::kBroken: warn("skipping broken symbolic link " + quoted(entry.path())); break;
      case Kind::kOther: break;
    }
  }
  return listing;
}

bool ImageTreeWalker::claim(const fs::path& folder, bool is_link, const fs::path& canonical) {
  if (is_link && inside_walked(canonical)) {
    warn("skipping symbolic link " + quoted(folder) + ": it leads to " + quoted(canonical) +
         ", which is already listed or being listed (a loop or a duplicate)");
    return false;
  }
  if (!is_link && walked_.count(canonical)) {
    warn("skipping folder " + quoted(folder) + ": it is already listed (reached again through a symbolic link)");
    return false;
  }
  walked_.insert(canonical);
  return true;
}

bool ImageTreeWalker::walk(const fs::path& folder, std::vector<fs::path>& files) {
  std::error_code ec;
  const bool is_link = fs::is_symlink(folder, ec);
  const fs::path canonical = fs::canonical(folder, ec);
  if (ec) {
    warn("skipping " + quoted(folder) + ": cannot resolve path: " + ec.message());
    return false;
  }
  if (!claim(folder, is_link, canonical)) return false;
  visit(folder, canonical, files);
  return true;
}

// Recursion depth is bounded by the number of distinct folders (each is walked once), in
// practice by the depth of the tree.
void ImageTreeWalker::visit(const fs::path& folder, const fs::path& canonical, std::vector<fs::path>& files) {
  std::error_code ec;
  const auto entries = read_folder(folder, ec);
  if (ec) {
    warn("cannot read folder " + quoted(folder) + " (" + ec.message() + "); " +
         (entries.empty() ? "its images are left out" : "some of its entries are left out"));
    if (entries.empty()) return;
  }
  for (const auto& entry : entries) {
    bool is_link = false;
    switch (kind_of(entry, is_link)) {
      case Kind::kFile:
        if (has_image_extension(entry.path())) files.push_back(entry.path());
        break;
      case Kind::kBroken:
        warn("skipping broken symbolic link " + quoted(entry.path()));
        break;
      case Kind::kOther:
        break;
      case Kind::kFolder: {
        fs::path target;
        if (is_link) {
          target = fs::canonical(entry.path(), ec);
          if (ec) {
            warn("skipping " + quoted(entry.path()) + ": cannot resolve path: " + ec.message());
            break;
          }
        } else {
          // Neither the parent (canonical) nor this entry (not a link) has a link to resolve.
          target = canonical / entry.path().filename();
        }
        if (!claim(entry.path(), is_link, target)) break;
        visit(entry.path(), target, files);
        break;
      }
    }
  }
}

std::vector<fs::path> list_image_files(const fs::path& root, const WarningSink& warn) {
  std::error_code ec;
  if (!fs::exists(root, ec)) throw IoError(root.string() + ": no such file or folder");
  if (fs::is_regular_file(root, ec)) return {root};
  ImageTreeWalker walker(warn);
  const auto listing = walker.open_root(root);
  std::vector<fs::path> files;
  for (const auto& file : listing.files)
    if (has_image_extension(file)) files.push_back(file);
  for (const auto& folder : listing.folders) walker.walk(folder, files);
  sort_by_path_string(files);
  return files;
}

}  // namespace augflow::pipeline
