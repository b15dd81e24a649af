// The model spec: compact, preset and JSON forms, their round trips, and the errors a user sees
// (each names the token and its position).
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "common/error.hpp"
#include "model/config.hpp"

namespace augflow::model {
namespace {

const std::vector<std::string>& compact_specs() {
  static const std::vector<std::string> specs = {
      "fc2",
      "fc50-relu-fc10",
      "conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-pool2-fc128-relu-drop0.5-fc10",
      "conv64k3s2p1-lrelu0.2-avgpool2-flatten-fc10",
      "conv8k5-lrelu-tanh-gap-fc3",
      "conv16k3p1-bn-relu-res16-res32s2-res64s2-gap-fc10-sd0.5",
      "fc128-relu-dc0.5-fc10",
      "fc128-dc0.25-relu-bn-fc10",
      "conv4k1s3-pool3-drop0-fc2",
      "fc10-lrelu0.125-drop0.001-fc10",
      // A torchvision ResNet as PyTorch's ONNX export writes it (batch norm folded into the convs).
      "conv64k7s2p3-relu-pool3s2p1-res64b0-res128s2b0-gap-fc10",
      "conv4k3-pool2s1-pool3s2-pool3p1-pool4s3p2-avgpool2-res8s2-res8-fc2",
  };
  return specs;
}

TEST(ModelSpec, CompactRoundTrips) {
  for (const auto& text : compact_specs()) {
    SCOPED_TRACE(text);
    const ModelSpec spec = parse_model_spec(text, 10);
    EXPECT_EQ(print_model_spec(spec), text) << "the specs above are written in canonical form";
    EXPECT_EQ(parse_model_spec(print_model_spec(spec), 10), spec);
  }
}

TEST(ModelSpec, JsonRoundTrips) {
  for (const auto& text : compact_specs()) {
    SCOPED_TRACE(text);
    const ModelSpec spec = parse_model_spec(text, 10);
    const nlohmann::json json = model_spec_to_json(spec);
    EXPECT_EQ(json["version"], kModelSpecVersion);
    EXPECT_EQ(parse_model_spec(json.dump(), 10), spec);
    EXPECT_EQ(parse_model_spec(json.dump(2), 10), spec);
  }
}

TEST(ModelSpec, ArgumentsAndDefaults) {
  const ModelSpec spec = parse_model_spec("conv32k3p1-conv64k3s2p1-conv8k5-lrelu-lrelu0.2-pool2-res64s2-res8-drop0.5-fc10", 10);
  ASSERT_EQ(spec.layers.size(), 10u);
  using Args = std::map<std::string, double>;
  EXPECT_EQ(spec.layers[0].kind, "conv");
  EXPECT_EQ(spec.layers[0].args, (Args{{"out", 32}, {"k", 3}, {"s", 1}, {"p", 1}}));
  EXPECT_EQ(spec.layers[1].args, (Args{{"out", 64}, {"k", 3}, {"s", 2}, {"p", 1}}));
  EXPECT_EQ(spec.layers[2].args, (Args{{"out", 8}, {"k", 5}, {"s", 1}, {"p", 0}}));
  EXPECT_EQ(spec.layers[3].args, (Args{{"a", 0.01}}));
  EXPECT_EQ(spec.layers[4].args, (Args{{"a", 0.2}}));
  EXPECT_EQ(spec.layers[5].args, (Args{{"k", 2}, {"s", 2}, {"p", 0}}));
  EXPECT_EQ(spec.layers[6].args, (Args{{"out", 64}, {"s", 2}, {"bn", 1}}));
  EXPECT_EQ(spec.layers[7].args, (Args{{"out", 8}, {"s", 1}, {"bn", 1}}));
  EXPECT_EQ(spec.layers[8].args, (Args{{"p", 0.5}}));
  EXPECT_EQ(spec.layers[9].args, (Args{{"out", 10}}));
  EXPECT_EQ(spec.survival, 1.0);
  // Suffixes in another order and spaces around tokens mean the same.
  EXPECT_EQ(parse_model_spec("conv64p1s2k3", 10).layers[0].args, spec.layers[1].args);
  EXPECT_EQ(parse_model_spec(" fc50 - relu -fc10 ", 10), parse_model_spec("fc50-relu-fc10", 10));
  // sd is not a layer, wherever it is written.
  const ModelSpec sd = parse_model_spec("res8-sd0.8-gap-fc2", 2);
  EXPECT_EQ(sd.layers.size(), 3u);
  EXPECT_EQ(sd.survival, 0.8);
  EXPECT_EQ(print_model_spec(sd), "res8-gap-fc2-sd0.8");
}

TEST(ModelSpec, PoolStrideAndPaddingAndResWithoutBatchNorm) {
  using Args = std::map<std::string, double>;
  const auto args = [](const std::string& token) { return parse_model_spec(token + "-fc2", 2).layers.at(0).args; };
  EXPECT_EQ(args("pool3s2p1"), (Args{{"k", 3}, {"s", 2}, {"p", 1}}));
  EXPECT_EQ(args("pool3"), (Args{{"k", 3}, {"s", 3}, {"p", 0}})) << "the stride defaults to the window";
  EXPECT_EQ(args("pool2s1"), (Args{{"k", 2}, {"s", 1}, {"p", 0}}));
  EXPECT_EQ(args("pool3p1s2"), args("pool3s2p1"));
  EXPECT_EQ(args("res64s2b0"), (Args{{"out", 64}, {"s", 2}, {"bn", 0}}));
  EXPECT_EQ(args("res64b1"), args("res64"));
  // Defaults are not printed: s equal to k, p 0, b1.
  EXPECT_EQ(print_model_spec(parse_model_spec("pool3s3p0-res8s1b1-fc2", 2)), "pool3-res8-fc2");
  EXPECT_EQ(print_model_spec(parse_model_spec("pool3s2p1-res8b0-fc2", 2)), "pool3s2p1-res8b0-fc2");
  // JSON: keys k, s, p and bn, with the same defaults.
  EXPECT_EQ(parse_model_spec(R"({"layers":[{"kind":"pool","k":3,"s":2,"p":1},{"kind":"res","out":8,"bn":0},)"
                             R"({"kind":"fc","out":2}]})",
                             2),
            parse_model_spec("pool3s2p1-res8b0-fc2", 2));
  EXPECT_EQ(parse_model_spec(R"({"layers":[{"kind":"pool","k":2},{"kind":"fc","out":2}]})", 2),
            parse_model_spec("pool2-fc2", 2));
  const nlohmann::json json = model_spec_to_json(parse_model_spec("pool3s2p1-res8b0-fc2", 2));
  EXPECT_EQ(json["layers"][0].dump(), R"({"k":3,"kind":"pool","p":1,"s":2})");
  EXPECT_EQ(json["layers"][1].dump(), R"({"bn":0,"kind":"res","out":8,"s":1})");
  // A spec built in code without the newer keys prints with their defaults.
  ModelSpec built;
  built.layers = {{"pool", {{"k", 2}}}, {"res", {{"out", 8}, {"s", 2}}}, {"fc", {{"out", 2}}}};
  EXPECT_EQ(print_model_spec(built), "pool2-res8s2-fc2");
}

TEST(ModelSpec, PresetsExpandWithTheClassCount) {
  EXPECT_EQ(print_model_spec(parse_model_spec("twolayer", 10)), "fc50-relu-fc10");
  EXPECT_EQ(print_model_spec(parse_model_spec("mlp", 7)), "fc512-relu-drop0.2-fc256-relu-fc7");
  // The benchmarks' model: keep in step with the README.
  EXPECT_EQ(print_model_spec(parse_model_spec("cnn-small", 10)),
            "conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-pool2-fc128-relu-fc10");
  const ModelSpec resnet = parse_model_spec(" resnet-mini ", 100);
  EXPECT_EQ(print_model_spec(resnet), "conv16k3p1-bn-relu-res16-res32s2-res64s2-gap-fc100-sd0.8");
  EXPECT_EQ(resnet.survival, 0.8);
  for (const char* preset : {"twolayer", "mlp", "cnn-small", "resnet-mini"}) {
    SCOPED_TRACE(preset);
    const ModelSpec spec = parse_model_spec(preset, 5);
    EXPECT_EQ(parse_model_spec(print_model_spec(spec), 5), spec);
    EXPECT_EQ(parse_model_spec(model_spec_to_json(spec).dump(), 5), spec);
    EXPECT_THROW(parse_model_spec(preset, 0), SpecError);
  }
}

TEST(ModelSpec, JsonForm) {
  const ModelSpec spec = parse_model_spec(
      R"({"version":1,"layers":[{"kind":"conv","out":32,"k":3,"p":1},{"kind":"relu"},)"
      R"({"kind":"res","out":32},{"kind":"gap"},{"kind":"fc","out":10}],"survival":0.8})",
      10);
  EXPECT_EQ(print_model_spec(spec), "conv32k3p1-relu-res32-gap-fc10-sd0.8");
  // Whole numbers are written as JSON integers.
  EXPECT_EQ(model_spec_to_json(spec)["layers"][0]["out"].dump(), "32");
  EXPECT_EQ(parse_model_spec(R"({"layers":[{"kind":"fc","out":3}]})", 3), parse_model_spec("fc3", 3));
}

/// The SpecError of `text`; fails the test when it parses.
SpecError error_of(const std::string& text) {
  try {
    parse_model_spec(text, 10);
  } catch (const SpecError& e) {
    return e;
  }
  ADD_FAILURE() << "no SpecError for " << text;
  return SpecError("");
}

struct BadSpec {
  std::string text;
  std::string token;
  std::size_t position;
  std::string says;
};

TEST(ModelSpec, ErrorsNameTheTokenAndPosition) {
  const std::vector<BadSpec> cases = {
      {"fc50-foo-fc10", "foo", 5, "unknown token"},
      {"fc50-Relu-fc10", "Relu", 5, "unknown token"},
      {"cnn-big", "cnn", 0, "unknown token"},
      {"fc10-drop1", "drop1", 5, "outside [0,1)"},
      {"fc10-drop1.5-fc10", "drop1.5", 5, "outside [0,1)"},
      {"fc10-drop", "drop", 5, "needs a number"},
      {"fc10-dropx", "dropx", 5, "unknown token"},
      {"fc10-drop0.5x", "drop0.5x", 5, "not a number"},
      {"fc128-dc0.5", "dc0.5", 6, "no fc follows"},
      {"dc0.5-dc0.2-fc10", "dc0.2", 6, "a second dc"},
      {"fc10-dc1-fc10", "dc1", 5, "outside [0,1)"},
      {"res16-gap-fc10-sd0", "sd0", 15, "outside (0,1]"},
      {"res16-gap-fc10-sd1.5", "sd1.5", 15, "outside (0,1]"},
      {"res16-sd0.5-gap-fc10-sd0.8", "sd0.8", 21, "sd given twice"},
      {"fc10-sd0.5", "sd0.5", 5, "needs res blocks"},
      {"conv0k3-fc10", "conv0k3", 0, "output channels"},
      {"conv8k0-fc10", "conv8k0", 0, "kernel size"},
      {"conv8k3s0-fc10", "conv8k3s0", 0, "stride"},
      {"conv8-fc10", "conv8", 0, "kernel size kK"},
      {"conv8k3k3-fc10", "conv8k3k3", 0, "given twice"},
      {"conv8k3x2-fc10", "conv8k3x2", 0, "unexpected 'x2'"},
      {"conv8k-fc10", "conv8k", 0, "needs a whole number"},
      {"fc0", "fc0", 0, "number of outputs"},
      {"fc", "fc", 0, "needs a whole number"},
      {"fc10.5", "fc10.5", 0, "unexpected"},
      {"fc99999999999", "fc99999999999", 0, "whole number from 1"},
      {"relu5-fc10", "relu5", 0, "takes no argument"},
      {"pool0-fc10", "pool0", 0, "window size"},
      {"res0-fc10", "res0", 0, "number of channels"},
      {"res8s0-fc10", "res8s0", 0, "stride"},
      {"res8p1-fc10", "res8p1", 0, "unexpected 'p1'"},
      {"res8b2-fc10", "res8b2", 0, "bn must be 0"},
      {"res8b-fc10", "res8b", 0, "'b' needs a whole number"},
      {"res8b0b0-fc10", "res8b0b0", 0, "'b' given twice"},
      {"fc10-pool3p2", "pool3p2", 5, "more than half the window 3"},
      {"pool2p2-fc10", "pool2p2", 0, "at most 1"},
      {"pool2s0-fc10", "pool2s0", 0, "stride"},
      {"pool2p-fc10", "pool2p", 0, "'p' needs a whole number"},
      {"pool2x1-fc10", "pool2x1", 0, "unexpected 'x1'"},
      {"pool3s2s1-fc10", "pool3s2s1", 0, "'s' given twice"},
      {"avgpool2s1-fc10", "avgpool2s1", 0, "unexpected"},
      {"lrelu1-fc10", "lrelu1", 0, "leaky slope"},
      {"fc10--relu", "", 5, "empty token"},
      {"fc10-", "", 5, "empty token"},
      {"", "", 0, "empty model spec"},
      {"  ", "", 2, "empty model spec"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    const SpecError e = error_of(c.text);
    const std::string message = e.what();
    EXPECT_EQ(e.token(), c.token);
    EXPECT_EQ(e.position(), c.position);
    EXPECT_NE(message.find(c.says), std::string::npos) << message;
    EXPECT_NE(message.find("at position " + std::to_string(c.position + 1)), std::string::npos) << message;
    if (!c.token.empty()) {
      EXPECT_NE(message.find("'" + c.token + "'"), std::string::npos) << message;
    }
    if (!c.text.empty() && c.text.find_first_not_of(' ') != std::string::npos) {
      // The spec is shown with a caret under the token.
      EXPECT_NE(message.find("\n  " + c.text + "\n  " + std::string(c.position, ' ') + "^"), std::string::npos)
          << message;
    }
  }
}

TEST(ModelSpec, PoolPaddingErrorSaysHowToFix) {
  const std::string message = error_of("conv8k3-pool3s2p2-fc10").what();
  EXPECT_NE(message.find("the padding 2 is more than half the window 3"), std::string::npos) << message;
  EXPECT_NE(message.find("at most 1"), std::string::npos) << message;
  EXPECT_NE(message.find("write p1 or less, or a larger window"), std::string::npos) << message;
  EXPECT_NE(message.find("poolK[sS][pP]"), std::string::npos) << message;
  const std::string none = error_of("pool1p1-fc10").what();
  EXPECT_NE(none.find("write p0 (no padding)"), std::string::npos) << none;
}

TEST(ModelSpec, UnknownTokenListsTheAcceptedForms) {
  const std::string message = error_of("conv32k3p1-maxpool2-fc10").what();
  EXPECT_NE(message.find("'maxpool2'"), std::string::npos) << message;
  for (const char* form : {"convNkK[sS][pP]", "fcN", "poolK[sS][pP]", "avgpoolK", "dropP", "dcP", "resN[sS][b0]", "sdP",
                           "lrelu[A]", "cnn-small", "resnet-mini"})
    EXPECT_NE(message.find(form), std::string::npos) << form << " missing in:\n" << message;
}

TEST(ModelSpec, JsonErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"version":2,"layers":[{"kind":"fc","out":10}]})", "version 2"},
      {R"({"layers":[]})", "no layers"},
      {R"({"layers":[{"out":10}]})", "needs a \"kind\""},
      {R"({"layers":[{"kind":"fcc","out":10}]})", "unknown kind \"fcc\""},
      {R"({"layers":[{"kind":"fc"}]})", "needs \"out\""},
      {R"({"layers":[{"kind":"fc","out":10,"k":3}]})", "no argument \"k\""},
      {R"({"layers":[{"kind":"fc","out":"10"}]})", "must be a number"},
      {R"({"layers":[{"kind":"fc","out":10.5}]})", "whole number"},
      {R"({"layers":[{"kind":"drop","p":1},{"kind":"fc","out":10}]})", "outside [0,1)"},
      {R"({"layers":[{"kind":"dc","p":0.5}]})", "no fc follows"},
      {R"({"layers":[{"kind":"fc","out":10}],"survival":0.5})", "needs res blocks"},
      {R"({"layers":[{"kind":"res","out":8},{"kind":"fc","out":10}],"survival":0})", "outside (0,1]"},
      {R"({"layers":[{"kind":"fc","out":10}],"extra":1})", "unknown key \"extra\""},
      {R"({"layers":[{"kind":"pool","k":3,"p":2},{"kind":"fc","out":10}]})", "more than half the window 3"},
      {R"({"layers":[{"kind":"pool","s":2},{"kind":"fc","out":10}]})", "needs \"k\""},
      {R"({"layers":[{"kind":"pool","k":2,"s":0},{"kind":"fc","out":10}]})", "stride"},
      {R"({"layers":[{"kind":"avgpool","k":2,"s":1},{"kind":"fc","out":10}]})", "no argument \"s\""},
      {R"({"layers":[{"kind":"res","out":8,"bn":0.5},{"kind":"fc","out":10}]})", "bn must be 0"},
      {R"({"layers":[{"kind":"fc","out":10})", "does not parse"},
  };
  for (const auto& [text, says] : cases) {
    SCOPED_TRACE(text);
    const std::string message = error_of(text).what();
    EXPECT_NE(message.find(says), std::string::npos) << message;
  }
  // The layer's index is the position, its JSON the token.
  const SpecError e = error_of(R"({"layers":[{"kind":"relu"},{"kind":"fc","out":0}]})");
  EXPECT_EQ(e.position(), 1u);
  EXPECT_EQ(e.token(), R"({"kind":"fc","out":0})");
}

TEST(ModelSpec, PrintRejectsUnknownKinds) {
  ModelSpec spec;
  spec.layers.push_back({"softmax", {}});
  EXPECT_THROW(print_model_spec(spec), Error);
}

}  // namespace
}  // namespace augflow::model
