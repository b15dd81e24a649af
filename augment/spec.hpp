// The augmentation spec language, parsed in this one place for preview, train, eval and bench.
//
//   spec  := step ('|' step)*
//   step  := name ['(' [arg (',' arg)*] ')']
//   arg   := [param '='] value            (positional arguments first, in declared order)
//   value := number | number ':' number | word | '[' number (',' number)* ']'
//
// e.g. "hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | normalize(imagenet)".
// normalize, if present, is the last step. print(parse(x)) is canonical and parses back to an
// equal pipeline; the JSON form ({"version":1,"steps":[...]}) is equivalent.
// Errors are SpecError naming the token, its position and the accepted forms.
//
// API: public, part of augflow::augment; installed as <augflow/augment/spec.hpp>.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "augflow/augment/pipeline.hpp"

namespace augflow::augment {

inline constexpr int kSpecVersion = 1;

/// A training pipeline: random transforms and an optional final normalize.
Pipeline parse_pipeline(std::string_view spec);
/// A test-time view spec: one of center/tencrop/multiscale and an optional normalize.
/// The bare names "center", "tencrop" and "multiscale" use the defaults (256/224, 224..640).
ViewPipeline parse_views(std::string_view spec);

/// From the JSON form. Throws SpecError as the text parser does.
Pipeline pipeline_from_json(const nlohmann::json& json);
/// Text or JSON: a spec whose first non-blank character is '{' is read as JSON.
Pipeline parse_pipeline_any(std::string_view spec);

/// The printed form of one step: "scale_crop(min=256,max=480,size=224)".
std::string print_step(const Args& args);
/// Multi-line help listing every step and parameter with defaults (for --help and README).
std::string spec_help();

}  // namespace augflow::augment
