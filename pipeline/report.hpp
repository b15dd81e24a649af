// Bookkeeping of unusable samples: each is reported once (path and reason), counted, and
// excluded from later epochs; summary() ends a run. Thread-safe: the flow graph's decode
// stage calls add() from any thread.
//
// API: public, part of augflow::loader; installed as <augflow/pipeline/report.hpp>.
#pragma once

#include <cstddef>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "augflow/pipeline/dataset.hpp"

namespace augflow::pipeline {

class BadFiles {
 public:
  /// `sink` receives one line per newly found bad sample ("skipped PATH: REASON").
  BadFiles(std::size_t dataset_size, WarningSink sink);

  /// Records that sample `index` (shown as `what`) cannot be used; reports it the first time.
  void add(std::size_t index, const std::string& what, const std::string& reason);
  /// A snapshot of which samples are excluded (for the next epoch's order).
  std::vector<bool> excluded() const;
  std::size_t count() const;
  /// Each bad sample with its reason, in index order.
  std::map<std::size_t, std::pair<std::string, std::string>> entries() const;
  /// The reason sample `index` was found unusable, or nothing when it was not.
  std::optional<std::string> find(std::size_t index) const;
  /// "2 files skipped: a.gif (GIF is not supported ...), b.jpg (truncated JPEG ...)" or "".
  std::string summary(std::size_t max_listed = 10) const;

 private:
  mutable std::mutex mutex_;
  std::vector<bool> excluded_;
  std::map<std::size_t, std::pair<std::string, std::string>> entries_;  // index -> (what, reason)
  WarningSink sink_;
};

}  // namespace augflow::pipeline
