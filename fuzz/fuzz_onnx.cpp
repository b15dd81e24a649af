// libFuzzer harness: the ONNX reader (model::import_onnx_bytes, which import_onnx and
// `augflow predict/eval/train --init` use). Any bytes must give a model or a DataError; a model
// it reads must build and run: its network is constructed and one test-time forward pass made
// on a small input, as predict would.
#include "fuzz/fuzz_common.hpp"
#include "model/net.hpp"
#include "model/onnx.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace augflow;
  fuzz::expect_ok_or_error([&] {
    const model::OnnxModel m = model::import_onnx_bytes({data, size}, "fuzz.onnx");
    const model::Checkpoint& c = m.checkpoint;
    // Keep the forward pass small: the input is what the file declares.
    if (static_cast<std::size_t>(c.input.c) * c.input.h * c.input.w > (1u << 16)) return;
    model::Net net(model::parse_model_spec(c.model_spec, c.classes), c.input, c.classes);
    model::restore_net(net, c);
    // Wide layers on a small input still make large activations: keep the pass cheap.
    if (net.flops_per_sample() > 5e7) return;
    model::Tensor x(model::Shape{1, c.input.c, c.input.h, c.input.w}, 0.5f);
    const model::Tensor& logits = net.forward(x, {model::Mode::test, 0, 0, 0, nullptr});
    fuzz::require(logits.shape().c == c.classes, "the logits have one value per class");
  });
  return 0;
}
