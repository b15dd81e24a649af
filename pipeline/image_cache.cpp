#include "pipeline/image_cache.hpp"

#include <mutex>

namespace augflow::pipeline {

std::string ImageCache::key(const std::filesystem::path& path, int channels) {
  return std::to_string(channels) + ":" + path.string();
}

cv::Mat ImageCache::get(const std::filesystem::path& path, int channels) const {
  std::shared_lock lock(mutex_);
  const auto it = images_.find(key(path, channels));
  if (it == images_.end()) {
    ++misses_;
    return {};
  }
  ++hits_;
  return it->second;  // shares the pixels; nobody writes into a cached image
}

void ImageCache::offer(const std::filesystem::path& path, int channels, const cv::Mat& image) {
  const std::size_t bytes = image.total() * image.elemSize();
  std::unique_lock lock(mutex_);
  if (used_.load() + bytes > budget_) return;  // full: this one streams from disk
  if (images_.emplace(key(path, channels), image).second) used_ += bytes;
}

}  // namespace augflow::pipeline
