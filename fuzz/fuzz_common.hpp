// Shared by the libFuzzer harnesses: what counts as an expected outcome.
//
// Every harness feeds the fuzzer's bytes to one parser. An augflow::Error (SpecError,
// DataError, ShapeError, ...) is the documented way to reject bad input and is caught here.
// Anything else is a finding: a crash or sanitizer report, a hang (-timeout), or an exception
// of another type (std::bad_alloc, nlohmann::json::exception, cv::Exception, ...), which
// escapes the harness and makes libFuzzer report a deadly signal (std::terminate).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "common/error.hpp"

namespace augflow::fuzz {

/// Runs f(); augflow::Error is an expected outcome.
template <class F>
void expect_ok_or_error(F&& f) {
  try {
    f();
  } catch (const augflow::Error&) {
  }
}

/// A property that must hold (round trips): reports and aborts, which libFuzzer records as a crash.
inline void require(bool ok, const char* what, std::string_view detail = {}) {
  if (ok) return;
  std::fprintf(stderr, "fuzz invariant failed: %s\n%.*s\n", what, static_cast<int>(detail.size()), detail.data());
  std::abort();
}

}  // namespace augflow::fuzz
