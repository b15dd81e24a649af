#include "pipeline/image_files.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string_view>

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

std::vector<fs::path> list_image_files(const fs::path& root) {
  std::error_code ec;
  if (!fs::exists(root, ec)) throw IoError(root.string() + ": no such file or folder");
  if (fs::is_regular_file(root, ec)) return {root};
  std::vector<fs::path> files;
  fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
  if (ec) throw IoError(root.string() + ": cannot read folder: " + ec.message());
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) throw IoError(root.string() + ": error while listing: " + ec.message());
    const auto name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && has_image_extension(it->path())) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace augflow::pipeline
