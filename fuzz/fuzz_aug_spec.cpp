// libFuzzer harness: the augmentation spec parser (augment/spec.cpp), text and JSON forms, and
// the test-time view parser. Parsed specs must print canonically and parse back to the same
// printed form (the round trip the spec language promises).
#include <string>
#include <string_view>

#include "augment/spec.hpp"
#include "fuzz/fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace augflow;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_ok_or_error([&] {
    const augment::Pipeline p = augment::parse_pipeline_any(text);
    const std::string printed = p.print();
    const augment::Pipeline again = augment::parse_pipeline(printed);
    fuzz::require(again.print() == printed, "augmentation spec: print(parse(print(parse(x)))) != print(parse(x))", printed);
  });
  fuzz::expect_ok_or_error([&] {
    const augment::ViewPipeline v = augment::parse_views(text);
    const std::string printed = v.print();
    const augment::ViewPipeline again = augment::parse_views(printed);
    fuzz::require(again.print() == printed, "view spec: print(parse(print(parse(x)))) != print(parse(x))", printed);
  });
  return 0;
}
