#include "pipeline/report.hpp"

namespace augflow::pipeline {

BadFiles::BadFiles(std::size_t dataset_size, WarningSink sink)
    : excluded_(dataset_size, false), sink_(std::move(sink)) {}

void BadFiles::add(std::size_t index, const std::string& what, const std::string& reason) {
  {
    std::lock_guard lock(mutex_);
    if (index < excluded_.size()) {
      if (excluded_[index]) return;
      excluded_[index] = true;
    }
    if (!entries_.emplace(index, std::pair{what, reason}).second) return;
  }
  if (sink_) sink_("skipped " + what + ": " + reason);
}

std::vector<bool> BadFiles::excluded() const {
  std::lock_guard lock(mutex_);
  return excluded_;
}

std::size_t BadFiles::count() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::map<std::size_t, std::pair<std::string, std::string>> BadFiles::entries() const {
  std::lock_guard lock(mutex_);
  return entries_;
}

std::optional<std::string> BadFiles::find(std::size_t index) const {
  std::lock_guard lock(mutex_);
  const auto it = entries_.find(index);
  if (it == entries_.end()) return std::nullopt;
  return it->second.second;
}

std::string BadFiles::summary(std::size_t max_listed) const {
  std::lock_guard lock(mutex_);
  if (entries_.empty()) return {};
  std::string text = std::to_string(entries_.size()) + (entries_.size() == 1 ? " file" : " files") +
                     " skipped (excluded from later epochs):";
  std::size_t listed = 0;
  for (const auto& [index, entry] : entries_) {
    if (listed++ == max_listed) {
      text += "\n  ... and " + std::to_string(entries_.size() - max_listed) + " more";
      break;
    }
    text += "\n  " + entry.first + ": " + entry.second;
  }
  return text;
}

}  // namespace augflow::pipeline
