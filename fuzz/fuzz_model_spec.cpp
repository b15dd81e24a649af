// libFuzzer harness: the model spec parser (model/config.cpp): compact text, presets and JSON.
// A parsed spec must print canonically and parse back to an equal spec.
#include <string>
#include <string_view>

#include "fuzz/fuzz_common.hpp"
#include "model/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace augflow;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz::expect_ok_or_error([&] {
    const model::ModelSpec spec = model::parse_model_spec(text, 10);
    const std::string printed = model::print_model_spec(spec);
    const model::ModelSpec again = model::parse_model_spec(printed, 10);
    fuzz::require(again == spec, "model spec: parse(print(s)) != s", printed);
  });
  return 0;
}
