// A decoded-image cache shared by several loaders: the trials of `augflow search` over an image
// folder decode each file once for the whole search instead of once per trial and epoch.
//
// Images are kept whole and decoded (8-bit, not yet augmented), keyed by path and channel count,
// first come first kept until the byte budget is used up; later images stream from disk as
// without a cache. So memory is bounded by the budget, whatever the folder's size. Any number of
// loaders on any threads may use it at once.
//
// API: public, part of augflow::loader; installed as <augflow/pipeline/image_cache.hpp>.
#pragma once

#include <atomic>
#include <cstddef>
#include <filesystem>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include <opencv2/core.hpp>

namespace augflow::pipeline {

class ImageCache {
 public:
  explicit ImageCache(std::size_t budget_bytes) : budget_(budget_bytes) {}

  /// The cached image, or an empty Mat (a miss).
  cv::Mat get(const std::filesystem::path& path, int channels) const;
  /// Keeps `image` if it fits in what is left of the budget (and is not cached already).
  void offer(const std::filesystem::path& path, int channels, const cv::Mat& image);

  std::size_t bytes() const { return used_.load(); }
  std::size_t budget() const { return budget_; }
  std::size_t hits() const { return hits_.load(); }
  std::size_t misses() const { return misses_.load(); }

 private:
  static std::string key(const std::filesystem::path& path, int channels);

  mutable std::shared_mutex mutex_;
  std::unordered_map<std::string, cv::Mat> images_;
  std::size_t budget_;
  std::atomic<std::size_t> used_{0};
  mutable std::atomic<std::size_t> hits_{0}, misses_{0};
};

}  // namespace augflow::pipeline
