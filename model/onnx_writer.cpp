// ONNX export: the test-time network as an opset-13 graph (see model/onnx.hpp for the mapping).
#include "model/onnx.hpp"

#include <nlohmann/json.hpp>
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>

#include "common/atomic_file.hpp"
#include "common/error.hpp"
#include "common/format.hpp"
#include "model/activation.hpp"
#include "model/batch_norm.hpp"
#include "model/conv.hpp"
#include "model/dense.hpp"
#include "model/dropout.hpp"
#include "model/net.hpp"
#include "model/pool.hpp"
#include "model/residual.hpp"

namespace augflow::model {
namespace {

/// Appends nodes and initializers to a graph, naming values uniquely.
class GraphWriter {
 public:
  explicit GraphWriter(onnx::GraphProto& graph) : graph_(graph) {}

  std::string value(const std::string& hint) { return hint + "_" + std::to_string(counter_++); }

  /// A float initializer holding `count` floats from `data` with the given dims.
  std::string floats(const std::string& name, const float* data, std::size_t count, std::vector<std::int64_t> dims) {
    onnx::TensorProto& t = *graph_.add_initializer();
    t.set_name(name);
    t.set_data_type(onnx::TensorProto::FLOAT);
    for (auto d : dims) t.add_dims(d);
    t.set_raw_data(std::string(reinterpret_cast<const char*>(data), count * sizeof(float)));
    return name;
  }
  std::string floats(const std::string& name, const Tensor& tensor, std::vector<std::int64_t> dims) {
    return floats(name, tensor.data(), tensor.size(), std::move(dims));
  }
  std::string scalar(const std::string& name, float v) { return floats(name, &v, 1, {}); }
  std::string int64s(const std::string& name, const std::vector<std::int64_t>& values) {
    onnx::TensorProto& t = *graph_.add_initializer();
    t.set_name(name);
    t.set_data_type(onnx::TensorProto::INT64);
    t.add_dims(static_cast<std::int64_t>(values.size()));
    for (auto v : values) t.add_int64_data(v);
    return name;
  }

  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& inputs, const std::string& output,
                        const std::string& name) {
    onnx::NodeProto& n = *graph_.add_node();
    n.set_op_type(op);
    n.set_name(name);
    for (const auto& in : inputs) n.add_input(in);
    n.add_output(output);
    return n;
  }

 private:
  onnx::GraphProto& graph_;
  int counter_ = 0;
};

void attr_ints(onnx::NodeProto& node, const std::string& name, std::vector<std::int64_t> values) {
  onnx::AttributeProto& a = *node.add_attribute();
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INTS);
  for (auto v : values) a.add_ints(v);
}
void attr_int(onnx::NodeProto& node, const std::string& name, std::int64_t value) {
  onnx::AttributeProto& a = *node.add_attribute();
  a.set_name(name);
  a.set_type(onnx::AttributeProto::INT);
  a.set_i(value);
}
void attr_float(onnx::NodeProto& node, const std::string& name, float value) {
  onnx::AttributeProto& a = *node.add_attribute();
  a.set_name(name);
  a.set_type(onnx::AttributeProto::FLOAT);
  a.set_f(value);
}

std::string write_conv(GraphWriter& g, Conv2d& conv, const std::string& x, const std::string& name) {
  const std::int64_t out = conv.out_channels(), in = conv.in_channels(), k = conv.kernel();
  std::vector<std::string> inputs{x, g.floats(name + ".weight", conv.weight().value, {out, in, k, k})};
  if (conv.has_bias()) inputs.push_back(g.floats(name + ".bias", conv.bias().value, {out}));
  const std::string y = g.value(name);
  auto& node = g.node("Conv", inputs, y, name);
  attr_ints(node, "kernel_shape", {k, k});
  attr_ints(node, "strides", {conv.stride(), conv.stride()});
  const std::int64_t p = conv.padding();
  attr_ints(node, "pads", {p, p, p, p});
  return y;
}

std::string write_bn(GraphWriter& g, BatchNorm& bn, const std::string& x, const std::string& name) {
  const std::int64_t c = static_cast<std::int64_t>(bn.gamma().value.size());
  const std::string y = g.value(name);
  auto& node = g.node("BatchNormalization",
                      {x, g.floats(name + ".gamma", bn.gamma().value, {c}), g.floats(name + ".beta", bn.beta().value, {c}),
                       g.floats(name + ".running_mean", bn.running_mean(), {c}),
                       g.floats(name + ".running_var", bn.running_var(), {c})},
                      y, name);
  attr_float(node, "epsilon", static_cast<float>(BatchNorm::kEps));
  return y;
}

std::string write_residual(GraphWriter& g, Residual& res, const std::string& x, const std::string& name) {
  const auto conv_bn = [&](Conv2d& conv, BatchNorm* bn, const std::string& in, const std::string& part) {
    const std::string c = write_conv(g, conv, in, name + "." + part);
    return bn ? write_bn(g, *bn, c, name + "." + part + "_bn") : c;
  };
  const std::string c1 = conv_bn(res.conv1(), res.bn1(), x, "conv1");
  const std::string r1 = g.value(name + ".relu1");
  g.node("Relu", {c1}, r1, name + ".relu1");
  std::string branch = conv_bn(res.conv2(), res.bn2(), r1, "conv2");
  if (res.survival() < 1.0) {
    // Stochastic depth at test time: the branch scaled by its survival probability.
    const std::string scaled = g.value(name + ".survival");
    g.node("Mul", {branch, g.scalar(name + ".survival", static_cast<float>(res.survival()))}, scaled,
           name + ".survival");
    branch = scaled;
  }
  std::string shortcut = x;
  if (res.projection()) shortcut = conv_bn(*res.projection(), res.projection_bn(), x, "proj");
  const std::string sum = g.value(name + ".add");
  g.node("Add", {shortcut, branch}, sum, name + ".add");
  const std::string y = g.value(name + ".relu");
  g.node("Relu", {sum}, y, name + ".relu");
  return y;
}

/// Writes layer `layer` (token `index`) reading `x`; returns its output. `flat` tracks whether
/// the value is N x C (after Flatten, Gemm, Reshape) rather than N x C x H x W.
std::string write_layer(GraphWriter& g, Layer& layer, std::size_t index, const std::string& x, bool& flat) {
  const std::string name = std::to_string(index);
  const auto make_spatial = [&](const std::string& v) {
    if (!flat) return v;
    // N x C -> N x C x 1 x 1 as a Reshape: OpenCV 4.6 reads no Unsqueeze of two axes.
    flat = false;
    const std::string y = g.value(name + ".unflatten");
    g.node("Reshape", {v, g.int64s(name + ".spatial_shape", {0, -1, 1, 1})}, y, name + ".unflatten");
    return y;
  };
  const auto simple = [&](const std::string& op, const std::string& in) -> onnx::NodeProto& {
    return g.node(op, {in}, g.value(name + "." + op), name);
  };
  if (auto* conv = dynamic_cast<Conv2d*>(&layer)) return write_conv(g, *conv, make_spatial(x), name);
  if (auto* bn = dynamic_cast<BatchNorm*>(&layer)) return write_bn(g, *bn, x, name);
  if (auto* res = dynamic_cast<Residual*>(&layer)) return write_residual(g, *res, make_spatial(x), name);
  if (dynamic_cast<ReLU*>(&layer)) return simple("Relu", x).output(0);
  if (dynamic_cast<Tanh*>(&layer)) return simple("Tanh", x).output(0);
  if (auto* leaky = dynamic_cast<LeakyReLU*>(&layer)) {
    auto& node = simple("LeakyRelu", x);
    attr_float(node, "alpha", static_cast<float>(leaky->slope()));
    return node.output(0);
  }
  if (auto* pool = dynamic_cast<MaxPool*>(&layer)) {
    auto& node = simple("MaxPool", make_spatial(x));
    const std::int64_t k = pool->kernel(), s = pool->stride(), p = pool->padding();
    attr_ints(node, "kernel_shape", {k, k});
    attr_ints(node, "strides", {s, s});
    attr_ints(node, "pads", {p, p, p, p});
    return node.output(0);
  }
  if (auto* pool = dynamic_cast<AvgPool*>(&layer)) {
    auto& node = simple("AveragePool", make_spatial(x));
    const std::int64_t k = pool->kernel();
    attr_ints(node, "kernel_shape", {k, k});
    attr_ints(node, "strides", {k, k});
    return node.output(0);
  }
  if (dynamic_cast<GlobalAvgPool*>(&layer)) return simple("GlobalAveragePool", make_spatial(x)).output(0);
  if (dynamic_cast<Flatten*>(&layer)) {
    // Reshape, not Flatten: the reader takes a Flatten before a Gemm as part of the fc, and
    // an explicit flatten token must come back as one.
    flat = true;
    const std::string y = g.value(name + ".flatten");
    g.node("Reshape", {x, g.int64s(name + ".shape", {0, -1})}, y, name);
    return y;
  }
  if (auto* fc = dynamic_cast<Dense*>(&layer)) {
    std::string in = x;
    if (!flat) {
      in = g.value(name + ".flatten");
      attr_int(g.node("Flatten", {x}, in, name + ".flatten"), "axis", 1);
      flat = true;
    }
    const std::int64_t out = fc->out_features(), features = fc->in_features();
    const std::string y = g.value(name + ".gemm");
    auto& node = g.node("Gemm",
                        {in, g.floats(name + ".weight", fc->weight().value, {out, features}),
                         g.floats(name + ".bias", fc->bias().value, {out})},
                        y, name);
    attr_int(node, "transB", 1);
    return y;
  }
  if (auto* drop = dynamic_cast<Dropout*>(&layer)) {
    const std::string y = g.value(name + ".dropout");
    g.node("Dropout", {x, g.scalar(name + ".ratio", static_cast<float>(drop->p()))}, y, name);
    return y;
  }
  if (auto* dc = dynamic_cast<DropConnectMarker*>(&layer)) {
    // Named after its token ("3/dc0.5") so that the reader restores DropConnect for further
    // training; the layer index keeps node names unique.
    const std::string y = g.value(name + ".dropconnect");
    g.node("Identity", {x}, y, name + "/dc" + format_number(dc->p()));
    return y;
  }
  throw Error("ONNX export: layer " + name + " (" + layer.spec() + ") has no ONNX form (internal error)");
}

void set_value_info(onnx::ValueInfoProto& info, const std::string& name, const std::vector<std::int64_t>& dims) {
  info.set_name(name);
  auto& tensor = *info.mutable_type()->mutable_tensor_type();
  tensor.set_elem_type(onnx::TensorProto::FLOAT);
  auto& shape = *tensor.mutable_shape();
  shape.add_dim()->set_dim_param("N");
  for (auto d : dims) shape.add_dim()->set_dim_value(d);
}

}  // namespace

std::string onnx_model_bytes(const Checkpoint& ckpt, const OnnxMetadata& metadata) {
  Net net(parse_model_spec(ckpt.model_spec, ckpt.classes), Shape{0, ckpt.input.c, ckpt.input.h, ckpt.input.w},
          ckpt.classes);
  restore_net(net, ckpt);

  onnx::ModelProto model;
  model.set_ir_version(kOnnxIrVersion);
  model.set_producer_name("augflow");
  model.set_producer_version(AUGFLOW_VERSION_STRING);
  model.set_model_version(1);
  auto& opset = *model.add_opset_import();
  opset.set_domain("");
  opset.set_version(kOnnxOpset);
  onnx::GraphProto& graph = *model.mutable_graph();
  graph.set_name("augflow");
  set_value_info(*graph.add_input(), "input", {ckpt.input.c, ckpt.input.h, ckpt.input.w});

  GraphWriter writer(graph);
  std::string value = "input";
  bool flat = false;
  for (std::size_t i = 0; i < net.layer_count(); ++i) value = write_layer(writer, net.layer(i), i, value, flat);
  // The last layer is an fc (Net checks it): its output is N x classes. Name it "logits".
  for (auto& node : *graph.mutable_node())
    for (auto& out : *node.mutable_output())
      if (out == value) out = "logits";
  set_value_info(*graph.add_output(), "logits", {ckpt.classes});

  OnnxMetadata props = metadata;
  props["model_spec"] = ckpt.model_spec;
  props["class_names"] = nlohmann::json(ckpt.class_names).dump();
  props["input_channels"] = std::to_string(ckpt.input.c);
  props["input_height"] = std::to_string(ckpt.input.h);
  props["input_width"] = std::to_string(ckpt.input.w);
  props["augmentation"] = ckpt.augmentation;
  props["seed"] = std::to_string(ckpt.seed);
  props["epoch"] = std::to_string(ckpt.epoch);
  for (const auto& [key, value_text] : props) {
    auto& entry = *model.add_metadata_props();
    entry.set_key(key);
    entry.set_value(value_text);
  }
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception& e) {
    throw Error(std::string("ONNX export: the ONNX checker rejects the graph (internal error): ") + e.what());
  }
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw Error("ONNX export: the model does not serialize (over 2 GB?)");
  return bytes;
}

void export_onnx(const Checkpoint& checkpoint, const OnnxMetadata& metadata, const std::string& path) {
  write_file_atomically(path, onnx_model_bytes(checkpoint, metadata));
}

}  // namespace augflow::model
