// libFuzzer harness: the checkpoint reader (model::load_checkpoint_bytes, which
// load_checkpoint uses). Each input is read as it is, then again with its CRC-32 recomputed, so
// that mutations reach the header and tensor-table checks behind the checksum. A loaded
// checkpoint's model spec is parsed as `augflow eval` would.
#include <cstring>
#include <vector>

#include <zlib.h>

#include "fuzz/fuzz_common.hpp"
#include "model/checkpoint.hpp"
#include "model/config.hpp"

namespace {

void load(std::span<const std::uint8_t> bytes) {
  using namespace augflow;
  fuzz::expect_ok_or_error([&] {
    const model::Checkpoint c = model::load_checkpoint_bytes(bytes, "fuzz.ckpt");
    (void)model::parse_model_spec(c.model_spec, c.classes > 0 ? c.classes : 1);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  load({data, size});
  if (size >= 36) {
    std::vector<std::uint8_t> fixed(data, data + size);
    const auto crc = static_cast<std::uint32_t>(crc32_z(crc32_z(0L, Z_NULL, 0), fixed.data() + 12, size - 16));
    for (int i = 0; i < 4; ++i) fixed[size - 4 + i] = static_cast<std::uint8_t>(crc >> (8 * i));
    load(fixed);
  }
  return 0;
}
