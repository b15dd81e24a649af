// Inputs the libFuzzer harnesses (fuzz/) found, kept as regression tests: each must now give
// an augflow::Error (or a result), never another exception or a crash. The bytes are the
// fuzzer's own crash files, unchanged; the comment says what was wrong.
#include <string>
#include <string_view>

#include <gtest/gtest.h>

#include "augment/spec.hpp"
#include "common/error.hpp"
#include "model/config.hpp"

namespace augflow {
namespace {

std::string_view bytes_of(const char* data, std::size_t size) { return {data, size}; }

// fuzz_aug_spec: a JSON number that overflows a double (1777511102e888) made nlohmann throw
// out_of_range, which parse_pipeline_any did not catch (it caught parse_error only): the
// exception escaped as a non-augflow error (augflow exited 1 with an unhelpful message).
TEST(FuzzRegression, AugSpecJsonNumberOverflow) {
  static const char crash[] = "{\"\": 1777511102e888r\x82\x00, \"e\xe6" "6|";
  EXPECT_THROW(augment::parse_pipeline_any(bytes_of(crash, sizeof crash - 1)), SpecError);
  EXPECT_THROW(augment::parse_pipeline_any(R"({"version": 1, "steps": [{"name": "hflip", "p": 1e999}]})"), SpecError);
}

// fuzz_model_spec: the same in the model spec's JSON form (10e510).
TEST(FuzzRegression, ModelSpecJsonNumberOverflow) {
  static const char crash[] = "{\"v\\\"s\" :{\"v\\\"s\" :10e510e5: 7{";
  EXPECT_THROW(model::parse_model_spec(bytes_of(crash, sizeof crash - 1), 10), SpecError);
  EXPECT_THROW(model::parse_model_spec(R"({"version": 1, "layers": [{"kind": "fc", "out": 1e999}]})", 10), SpecError);
}

}  // namespace
}  // namespace augflow
