// Finding image files in a folder tree, the way torchvision's ImageFolder counts them.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace augflow::pipeline {

/// True for the extensions torchvision treats as images (jpg jpeg png bmp webp tif tiff gif
/// ppm pgm), in any case. GIF is listed so that such files are reported as undecodable rather
/// than silently ignored.
bool has_image_extension(const std::filesystem::path& path);

/// Every image file below `root` (recursively, hidden files and folders skipped), sorted by
/// path so the order does not depend on the file system. `root` may also be a single file.
/// Throws IoError when `root` does not exist or cannot be read.
std::vector<std::filesystem::path> list_image_files(const std::filesystem::path& root);

}  // namespace augflow::pipeline
