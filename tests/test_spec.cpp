// The augmentation spec: registry consistency, parse/print/JSON round trips (looping over the
// registry so new steps are covered), and the errors a user sees for bad specs.
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "augment/registry.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"

namespace augflow::augment {
namespace {

std::map<std::string, Value> defaults_of(const StepInfo& step) {
  std::map<std::string, Value> values;
  for (const auto& p : step.params) values[p.name] = p.default_value;
  return values;
}

/// Specs with non-default values for every train step and the normalize forms, on top of the
/// bare step names taken from the registry.
const std::vector<std::string>& extra_specs() {
  static const std::vector<std::string> specs = {
      "hflip(p=1) | vflip(0.25)",
      "scale_crop(256,480,224)",
      "scale_crop(min=300,max=300,size=100)",
      "resized_crop(size=128,area=0.25:0.75,ratio=[0.5,2])",
      "pad_crop(8,40,reflect)",
      "pad_crop(border=wrap)",
      "jitter(brightness=0.4,contrast=0.4,saturation=0.3,hue=0.1)",
      "jitter(brightness=0.5:1.75,hue=-0.2:0.05)",
      "lighting(std=0.25)",
      "affine(translate=0.1,rotate=-30:15,scale=0.8:1.25,stretch=0.1,shear=7.5,interpolation=cubic,border=reflect)",
      "erase(p=1,area=0.1:0.2,ratio=0.5:2,value=random)",
      "hflip | normalize",
      "normalize(none)",
      "normalize(mean=[0.5],std=[0.25])",
      "normalize(preset=custom,mean=[0.4,0.5,0.6],std=[0.2,0.25,0.3])",
      "hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | affine(rotate=10,shear=5) | normalize(imagenet)",
  };
  return specs;
}

/// Every training spec the round-trip tests check: each train step and normalize by bare name
/// (so a newly registered step is included without editing this file), then the extras.
std::vector<std::string> round_trip_specs() {
  std::vector<std::string> specs;
  for (const auto& step : step_registry())
    if (step.kind != StepKind::view) specs.push_back(step.name);
  for (const auto& s : extra_specs()) specs.push_back(s);
  return specs;
}

TEST(Registry, NamesAreUniqueAndFindable) {
  std::set<std::string> names;
  int train = 0;
  for (const auto& step : step_registry()) {
    SCOPED_TRACE(step.name);
    EXPECT_TRUE(names.insert(step.name).second) << "duplicate step name";
    EXPECT_EQ(find_step(step.name), &step);
    EXPECT_FALSE(step.help.empty());
    EXPECT_EQ(step.kind == StepKind::train, static_cast<bool>(step.make))
        << "train steps, and only they, have a factory";
    train += step.kind == StepKind::train;
    std::set<std::string> params;
    for (const auto& p : step.params) {
      SCOPED_TRACE(p.name);
      EXPECT_TRUE(params.insert(p.name).second) << "duplicate parameter";
      EXPECT_FALSE(p.help.empty());
      // The default has the declared kind, or printing it would not parse back as that kind.
      EXPECT_EQ(p.default_value.kind, p.kind);
      if (p.kind == ValueKind::word) {
        EXPECT_NE(std::find(p.choices.begin(), p.choices.end(), p.default_value.word), p.choices.end())
            << "default word is not one of the choices";
      }
    }
  }
  EXPECT_GE(train, 9);
  EXPECT_EQ(find_step("no_such_step"), nullptr);
  // --help lists every step.
  const std::string help = spec_help();
  for (const auto& step : step_registry()) EXPECT_NE(help.find(step.name + "("), std::string::npos) << step.name;
}

TEST(Registry, EveryTrainStepBuildsWithDefaults) {
  for (const auto& step : step_registry()) {
    if (step.kind != StepKind::train) continue;
    SCOPED_TRACE(step.name);
    const Args args(step.name, defaults_of(step));
    TransformPtr t;
    ASSERT_NO_THROW(t = step.make(args));
    ASSERT_TRUE(t);
    EXPECT_EQ(t->name(), step.name);
    EXPECT_EQ(t->args(), args);

    // The bare name in a spec means the same thing.
    Pipeline p;
    ASSERT_NO_THROW(p = parse_pipeline(step.name));
    ASSERT_EQ(p.transforms().size(), 1u);
    EXPECT_EQ(p.transforms()[0]->args(), args);
    EXPECT_EQ(p.normalize().args().word("preset"), "none") << "no normalize step means x/255";
  }
}

TEST(Spec, PrintParseRoundTrip) {
  for (const auto& spec : round_trip_specs()) {
    SCOPED_TRACE(spec);
    Pipeline first;
    ASSERT_NO_THROW(first = parse_pipeline(spec));
    const std::string printed = first.print();
    Pipeline second;
    ASSERT_NO_THROW(second = parse_pipeline(printed)) << printed;
    EXPECT_EQ(second.print(), printed);
    EXPECT_EQ(second.to_json(), first.to_json());
    ASSERT_EQ(second.transforms().size(), first.transforms().size());
    for (std::size_t i = 0; i < first.transforms().size(); ++i)
      EXPECT_EQ(second.transforms()[i]->args(), first.transforms()[i]->args()) << "step " << i;
    EXPECT_EQ(second.normalize().args(), first.normalize().args());
    EXPECT_EQ(second.normalize().mean(), first.normalize().mean());
    EXPECT_EQ(second.normalize().std(), first.normalize().std());
  }
}

TEST(Spec, JsonRoundTrip) {
  for (const auto& spec : round_trip_specs()) {
    SCOPED_TRACE(spec);
    const Pipeline p = parse_pipeline(spec);
    const nlohmann::json json = p.to_json();
    EXPECT_EQ(json.at("version"), kSpecVersion);
    Pipeline back;
    ASSERT_NO_THROW(back = pipeline_from_json(json)) << json.dump();
    EXPECT_EQ(back.print(), p.print());
    EXPECT_EQ(back.to_json(), json);
    // The JSON text goes through parse_pipeline_any as well.
    Pipeline any;
    ASSERT_NO_THROW(any = parse_pipeline_any("  " + json.dump(2)));
    EXPECT_EQ(any.print(), p.print());
  }
  EXPECT_EQ(parse_pipeline_any("hflip(p=1)").print(), parse_pipeline("hflip(p=1)").print());
}

TEST(Spec, ViewSpecsRoundTrip) {
  std::vector<std::string> specs;
  for (const auto& step : step_registry())
    if (step.kind == StepKind::view) specs.push_back(step.name);
  specs.insert(specs.end(), {"center(300,256)", "tencrop(resize=288,size=256) | normalize(imagenet)",
                             "multiscale(scales=[256,320],size=224) | normalize(none)"});
  for (const auto& spec : specs) {
    SCOPED_TRACE(spec);
    ViewPipeline first = parse_views(spec);
    const std::string printed = first.print();
    ViewPipeline second = parse_views(printed);
    EXPECT_EQ(second.print(), printed);
    EXPECT_EQ(second.views.args(), first.views.args());
    EXPECT_EQ(second.views.count(), first.views.count());
  }
}

TEST(Spec, IssueExampleParses) {
  const std::string spec =
      "hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | affine(rotate=10,shear=5) | "
      "normalize(imagenet)";
  Pipeline p;
  ASSERT_NO_THROW(p = parse_pipeline(spec));
  ASSERT_EQ(p.transforms().size(), 4u);
  EXPECT_EQ(p.transforms()[0]->name(), "hflip");
  EXPECT_EQ(p.transforms()[0]->args().number("p"), 0.5);
  const Args& crop = p.transforms()[1]->args();
  EXPECT_EQ(crop.integer("min"), 256);
  EXPECT_EQ(crop.integer("max"), 480);
  EXPECT_EQ(crop.integer("size"), 224);
  const Args& jitter = p.transforms()[2]->args();
  EXPECT_DOUBLE_EQ(jitter.range("brightness").first, 0.6);
  EXPECT_DOUBLE_EQ(jitter.range("brightness").second, 1.4);
  EXPECT_DOUBLE_EQ(jitter.range("contrast").first, 0.6);
  EXPECT_EQ(jitter.range("saturation"), std::make_pair(1.0, 1.0));
  const Args& affine = p.transforms()[3]->args();
  EXPECT_EQ(affine.range("rotate"), std::make_pair(-10.0, 10.0));
  EXPECT_EQ(affine.range("shear"), std::make_pair(-5.0, 5.0));
  EXPECT_EQ(affine.range("translate"), std::make_pair(0.0, 0.0));
  EXPECT_EQ(p.normalize().args().word("preset"), "imagenet");
  EXPECT_DOUBLE_EQ(p.normalize().mean()[0], 0.485);
  EXPECT_DOUBLE_EQ(p.normalize().std()[2], 0.225);
  // Canonical text: every parameter named, in declared order.
  EXPECT_EQ(print_step(crop), "scale_crop(min=256,max=480,size=224)");
  EXPECT_EQ(p.print().substr(0, 50), "hflip(p=0.5) | scale_crop(min=256,max=480,size=224");
  EXPECT_NE(p.print().find("| normalize(preset=imagenet)"), std::string::npos) << p.print();
}

TEST(Spec, SingleNumbersWidenAsDeclared) {
  const Pipeline p = parse_pipeline(
      "jitter(brightness=1.5,hue=0.1) | affine(translate=0.2,rotate=10,stretch=0.1) | resized_crop(area=0.5)");
  const Args& jitter = p.transforms()[0]->args();
  EXPECT_EQ(jitter.range("brightness"), std::make_pair(0.0, 2.5));  // around_one, clamped at 0
  EXPECT_EQ(jitter.range("hue"), std::make_pair(-0.1, 0.1));        // symmetric
  const Args& affine = p.transforms()[1]->args();
  EXPECT_EQ(affine.range("translate"), std::make_pair(-0.2, 0.2));
  EXPECT_EQ(affine.range("rotate"), std::make_pair(-10.0, 10.0));
  EXPECT_DOUBLE_EQ(affine.range("stretch").first, 0.9);
  EXPECT_DOUBLE_EQ(affine.range("stretch").second, 1.1);
  EXPECT_EQ(p.transforms()[2]->args().range("area"), std::make_pair(0.5, 0.5));  // exact
  // Spaces are allowed anywhere between tokens.
  EXPECT_EQ(parse_pipeline("  hflip ( p = 1 )|vflip( 0.5 )  ").print(), parse_pipeline("hflip(p=1) | vflip(p=0.5)").print());
}

struct BadSpec {
  std::string spec;
  std::string token;  ///< the token the error must name ("" for none)
  std::string what;   ///< a fragment the message must contain
};

TEST(Spec, ErrorsNameTokenAndPosition) {
  const std::vector<BadSpec> cases = {
      {"hflip | bogus(1)", "bogus", "unknown step"},
      {"hflip(q=0.5)", "q=0.5", "no parameter 'q'"},
      {"hflip(p=high)", "p=high", "must be a number"},
      {"scale_crop(size=224, 256)", "256", "positional argument after a named one"},
      {"hflip(0.5, 0.7)", "0.7", "too many arguments"},
      {"normalize(imagenet) | hflip", "normalize", "must be the last step"},
      {"hflip | tencrop", "tencrop", "test-time view"},
      {"scale_crop(480,256,224)", "scale_crop", "swap"},
      {"hflip(p=1.5)", "hflip", "1.5"},
      {"vflip(p=-0.1)", "vflip", "-0.1"},
      {"erase(p=2)", "erase", "p must lie in [0, 1]"},
      {"scale_crop(200,480,224)", "scale_crop", "at least size"},
      {"scale_crop(min=256.5)", "min=256.5", "whole number"},
      {"pad_crop(border=diagonal)", "border=diagonal", "must be a word"},
      {"hflip(p=0.5, p=0.6)", "p=0.6", "given twice"},
      {"jitter(hue=0.7)", "jitter", "hue"},
      {"jitter(brightness=2:1)", "jitter", "brightness"},
      {"affine(rotate=[1,2,3])", "rotate=[1,2,3]", "range"},
      {"normalize(preset=custom)", "normalize", "mean"},
      {"hflip p=1", "p", "expected '|'"},
      {"hflip(p=0.5", "", "expected ',' or ')'"},
      {"hflip |", "", "expected a step name"},
      {"", "", "empty spec"},
      {"   ", "", "empty spec"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE("spec: \"" + c.spec + "\"");
    try {
      (void)parse_pipeline(c.spec);
      ADD_FAILURE() << "no SpecError";
    } catch (const SpecError& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("position"), std::string::npos) << message;
      EXPECT_NE(message.find(c.what), std::string::npos) << message;
      EXPECT_EQ(message.find('\0'), std::string::npos) << "NUL character in the message: " << message;
      EXPECT_EQ(e.token().find('\0'), std::string::npos) << "NUL character in the token";
      if (!c.token.empty()) {
        EXPECT_EQ(e.token(), c.token) << message;
        EXPECT_NE(message.find("'" + c.token + "'"), std::string::npos) << message;
        // The position points at the token in the spec.
        EXPECT_EQ(c.spec.compare(e.position(), c.token.size(), c.token), 0)
            << "position " << e.position() << " in " << message;
      }
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw something other than SpecError: " << e.what();
    }
  }
}

TEST(Spec, ErrorPositionIsOneBasedInMessage) {
  try {
    (void)parse_pipeline("hflip | bogus");
    FAIL() << "no SpecError";
  } catch (const SpecError& e) {
    EXPECT_EQ(e.position(), 8u);
    EXPECT_NE(std::string(e.what()).find("position 9"), std::string::npos) << e.what();
    // The accepted step names are listed.
    EXPECT_NE(std::string(e.what()).find("scale_crop"), std::string::npos) << e.what();
  }
}

TEST(Spec, JsonErrors) {
  using nlohmann::json;
  EXPECT_THROW(pipeline_from_json(json::array()), SpecError);
  EXPECT_THROW(pipeline_from_json(json{{"version", 1}}), SpecError);
  EXPECT_THROW(pipeline_from_json(json{{"version", 2}, {"steps", json::array()}}), SpecError);
  EXPECT_THROW(pipeline_from_json(json{{"steps", {{{"p", 1}}}}}), SpecError);
  EXPECT_THROW(pipeline_from_json(json{{"steps", {{{"name", "bogus"}}}}}), SpecError);
  EXPECT_THROW(pipeline_from_json(json{{"steps", {{{"name", "hflip"}, {"p", "often"}}}}}), SpecError);
  EXPECT_THROW(pipeline_from_json(json{{"steps", {{{"name", "hflip"}, {"p", 3}}}}}), SpecError);
  EXPECT_THROW(pipeline_from_json(json{{"steps", {{{"name", "hflip"}, {"p", nullptr}}}}}), SpecError);
  EXPECT_THROW(parse_pipeline_any("{not json"), SpecError);
  // A valid one, with ranges as two-element arrays.
  const Pipeline p = pipeline_from_json(
      json{{"version", 1}, {"steps", {{{"name", "affine"}, {"rotate", {-5, 5}}}, {{"name", "normalize"}}}}});
  EXPECT_EQ(p.transforms()[0]->args().range("rotate"), std::make_pair(-5.0, 5.0));
  EXPECT_EQ(p.normalize().args().word("preset"), "imagenet");
}

TEST(Spec, ViewSpecErrors) {
  EXPECT_THROW(parse_views("hflip"), SpecError);
  EXPECT_THROW(parse_views("center | hflip"), SpecError);
  EXPECT_THROW(parse_views("center | tencrop"), SpecError);
  EXPECT_THROW(parse_views("center | normalize | normalize"), SpecError);
  EXPECT_THROW(parse_views("center(resize=200,size=224)"), SpecError);
  EXPECT_THROW(parse_views("multiscale(scales=[256,200])"), SpecError);
  EXPECT_THROW(parse_views("multiscale(scales=[])"), SpecError);
  EXPECT_THROW(parse_views(""), SpecError);
}

}  // namespace
}  // namespace augflow::augment
