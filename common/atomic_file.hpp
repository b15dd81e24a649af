// Whole-file writes that a reader or a crash sees as the old file or the new one, never a part.
//
// API: internal to augflow::common; not installed.
#pragma once

#include <string>
#include <string_view>

namespace augflow {

/// Writes `bytes` to `path` through a temporary file in the same folder (named after the
/// process, so concurrent writers do not collide), fsyncs it and renames it over `path`.
/// Throws IoError naming the file and the system's reason; the target is then unchanged and
/// the temporary file removed.
void write_file_atomically(const std::string& path, std::string_view bytes);

}  // namespace augflow
