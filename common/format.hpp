// Number formatting shared by the spec printers of augment/ and model/.
//
// API: internal. Installed as <augflow/common/format.hpp> only because <augflow/augment/args.hpp>
// includes it; not for use outside augflow, may change in any release.
#pragma once

#include <charconv>
#include <string>

namespace augflow {

/// Shortest text that reads back to the same double ("0.4", "224", "1e-05"): the canonical
/// number form of every printed spec.
inline std::string format_number(double x) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, x);
  return std::string(buffer, result.ptr);
}

}  // namespace augflow
