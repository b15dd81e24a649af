// Finding image files in a folder tree, the way torchvision's ImageFolder counts them.
//
// One walker (ImageTreeWalker) serves both list_image_files and open_image_folder (dataset.hpp),
// so both agree on what counts as an image, which entries are hidden, and how symbolic links
// are treated: links to folders are followed, except a link that leads back into a folder
// already walked or being walked (a loop or a duplicate), which is skipped with a warning.
//
// API: public, part of augflow::loader; installed as <augflow/pipeline/image_files.hpp>.
#pragma once

#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace augflow::pipeline {

/// Receives warnings for a person (the same type as in dataset.hpp; redeclaring an alias to the
/// same type is allowed, and it lets this header stand alone).
using WarningSink = std::function<void(const std::string&)>;

/// True for the extensions torchvision treats as images (jpg jpeg png bmp webp tif tiff gif
/// ppm pgm), in any case. GIF is listed so that such files are reported as undecodable rather
/// than silently ignored. pbm is accepted too: the decoder reads every Netpbm kind.
bool has_image_extension(const std::filesystem::path& path);

/// Every image file below `root` (recursively, hidden files and folders skipped, symbolic links
/// to folders followed as ImageTreeWalker describes), sorted by path string so the order does
/// not depend on the file system. `root` may also be a single file. Throws IoError when `root`
/// does not exist or cannot be read; a sub-folder that cannot be read only gets a warning.
std::vector<std::filesystem::path> list_image_files(const std::filesystem::path& root,
                                                    const WarningSink& warn = {});

/// Walks folder trees for image files. The walker remembers the canonical path of every folder
/// it has walked or is walking, across calls, so that walking several folders of one root (the
/// class folders of an ImageFolder) never lists a file twice and never loops:
/// - a symbolic link to a folder is followed unless its target is such a folder or lies inside
///   one (a warning names the link);
/// - a plain folder already walked (reached before through a link) is skipped with a warning.
/// Hidden entries (name starting with '.') are skipped silently; broken links and folders that
/// cannot be read get a warning. Entries are visited in sorted name order, so which of two
/// routes to a folder wins is the same on every file system.
class ImageTreeWalker {
 public:
  explicit ImageTreeWalker(WarningSink warn = {});

  /// The immediate, non-hidden entries of a root folder, each sorted by name.
  struct Listing {
    std::vector<std::filesystem::path> folders;  ///< sub-folders, symbolic links to folders included
    std::vector<std::filesystem::path> files;    ///< regular files of any extension
  };

  /// Records `root` as being walked (links back into it will be skipped) and lists its entries.
  /// Throws IoError when `root` is missing, not a folder, or cannot be read.
  Listing open_root(const std::filesystem::path& root);

  /// Appends every image file below `folder` (recursively) to `files`, unsorted. Returns false,
  /// after a warning, when `folder` is skipped as described above.
  bool walk(const std::filesystem::path& folder, std::vector<std::filesystem::path>& files);

 private:
  /// Lists `folder`, whose canonical path is `canonical`, into `files`.
  void visit(const std::filesystem::path& folder, const std::filesystem::path& canonical,
             std::vector<std::filesystem::path>& files);
  /// Records `folder` (canonical path `canonical`) as walked; false, after a warning, when it
  /// must be skipped instead.
  bool claim(const std::filesystem::path& folder, bool is_link, const std::filesystem::path& canonical);
  /// True when `canonical` is a recorded folder or lies inside one.
  bool inside_walked(const std::filesystem::path& canonical) const;
  void warn(const std::string& message) const;

  WarningSink warn_;
  std::set<std::filesystem::path> walked_;  ///< canonical paths of folders walked or being walked
};

/// Sorts paths by their string (byte order), the order every listing in augflow uses.
void sort_by_path_string(std::vector<std::filesystem::path>& paths);

}  // namespace augflow::pipeline
