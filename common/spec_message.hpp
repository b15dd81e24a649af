// The one message format of every spec parser's SpecError (augmentation spec, model spec,
// search space): what is wrong, the token, where (the text with a caret under the token) and
// the accepted forms:
//
//   error: model spec: unknown layer 'fcc10' (token 'fcc10') at position 7
//     relu-fcc10
//          ^
//   accepted: convNkK[sS][pP], fcN, ...
//
// API: internal to augflow::common; not installed.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/error.hpp"

namespace augflow {

/// Throws SpecError("<area>: <what> (token '<token>') at position <position + 1>", with the
/// caret line when `text` is given and the accepted forms when given).
[[noreturn]] inline void throw_spec_error(std::string_view area, std::string_view text, std::size_t position,
                                          const std::string& token, const std::string& what,
                                          std::string_view accepted = {}) {
  std::string message = std::string(area) + ": " + what;
  if (!token.empty()) message += " (token '" + token + "')";
  message += " at position " + std::to_string(position + 1);
  if (!text.empty()) message += "\n  " + std::string(text) + "\n  " + std::string(position, ' ') + "^";
  if (!accepted.empty()) message += "\naccepted: " + std::string(accepted);
  throw SpecError(message, token, position);
}

}  // namespace augflow
