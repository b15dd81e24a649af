// ONNX import: an ONNX classifier read into augflow's layers (see model/onnx.hpp for what is read).
#include "model/onnx.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>

#include "common/error.hpp"
#include "common/format.hpp"
#include "model/batch_norm.hpp"
#include "model/conv.hpp"
#include "model/dense.hpp"
#include "model/net.hpp"
#include "model/residual.hpp"

namespace augflow::model {
namespace {

const char* const kSupported =
    "augflow reads Conv, BatchNormalization, Relu, LeakyRelu, Tanh, MaxPool, AveragePool (stride = kernel, no "
    "padding), GlobalAveragePool, ReduceMean over H and W, Flatten, Reshape to (N, -1), Gemm, MatMul + Add, "
    "Dropout, Identity, a final Softmax, and ResNet basic blocks (Add of a conv3x3-conv3x3 branch and the input "
    "or a 1x1 projection, then Relu)";

/// The double whose shortest decimal form is the float's ("0.1" for 0.1f): the value a person
/// wrote in the spec, which ONNX's float attributes and scalars keep only as floats.
double from_float(float value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::strtod(std::string(buffer, result.ptr).c_str(), nullptr);
}

/// Sizes past this are not a classifier augflow can train on a CPU; they also keep the shape
/// arithmetic far from overflow on hostile files.
constexpr std::int64_t kMaxDim = 1 << 16;

/// What one token of the spec needs loaded: named tensors (roles such as "weight", "conv1.bias").
struct ImportedLayer {
  LayerSpec spec;
  std::map<std::string, std::vector<float>> tensors;
  double survival = 1.0;  ///< res: the branch's test-time scale
};

class Reader {
 public:
  Reader(const onnx::ModelProto& model, std::string path) : model_(model), graph_(model.graph()), path_(std::move(path)) {}

  OnnxModel read();

 private:
  const onnx::ModelProto& model_;
  const onnx::GraphProto& graph_;
  std::string path_;
  int opset_ = 0;
  std::map<std::string, const onnx::TensorProto*> constants_;
  std::map<std::string, std::vector<int>> consumers_;
  std::string output_;
  Shape shape_;       // the current value's shape per sample (n = 1)
  bool flat_ = false;  // the current value is N x C
  std::vector<ImportedLayer> layers_;

  [[noreturn]] void fail(const std::string& what) const { throw DataError(path_, what); }
  [[noreturn]] void fail(const onnx::NodeProto& node, const std::string& what) const {
    fail("node '" + node.name() + "' (" + node.op_type() + "): " + what);
  }
  [[noreturn]] void unsupported(const onnx::NodeProto& node, const std::string& what) const {
    fail(node, what + "; " + kSupported);
  }

  const onnx::NodeProto& node(int i) const { return graph_.node(i); }
  std::vector<int> users(const std::string& value) const {
    const auto it = consumers_.find(value);
    return it == consumers_.end() ? std::vector<int>{} : it->second;
  }
  /// The one node reading `value`, or -1 (none, several, or it is the graph's output).
  int only_user(const std::string& value) const {
    const auto u = users(value);
    return u.size() == 1 && value != output_ ? u[0] : -1;
  }

  const onnx::AttributeProto* attr(const onnx::NodeProto& n, const std::string& name) const {
    for (const auto& a : n.attribute())
      if (a.name() == name) return &a;
    return nullptr;
  }
  std::int64_t attr_int(const onnx::NodeProto& n, const std::string& name, std::int64_t fallback) const {
    const auto* a = attr(n, name);
    if (!a) return fallback;
    if (a->type() != onnx::AttributeProto::INT) fail(n, "attribute " + name + " is not an integer");
    return a->i();
  }
  float attr_float(const onnx::NodeProto& n, const std::string& name, float fallback) const {
    const auto* a = attr(n, name);
    if (!a) return fallback;
    if (a->type() != onnx::AttributeProto::FLOAT) fail(n, "attribute " + name + " is not a float");
    return a->f();
  }
  std::vector<std::int64_t> attr_ints(const onnx::NodeProto& n, const std::string& name,
                                      std::vector<std::int64_t> fallback) const {
    const auto* a = attr(n, name);
    if (!a) return fallback;
    if (a->type() != onnx::AttributeProto::INTS) fail(n, "attribute " + name + " is not a list of integers");
    return {a->ints().begin(), a->ints().end()};
  }

  /// A constant (initializer or Constant node) by name; nullptr when `name` is computed.
  const onnx::TensorProto* constant(const std::string& name) const {
    const auto it = constants_.find(name);
    return it == constants_.end() ? nullptr : it->second;
  }
  std::vector<std::int64_t> dims_of(const onnx::TensorProto& t) const {
    return {t.dims().begin(), t.dims().end()};
  }
  std::vector<float> float_tensor(const onnx::NodeProto& n, int input, const std::vector<std::int64_t>& dims) const;
  std::vector<std::int64_t> int_tensor(const onnx::NodeProto& n, int input) const;
  bool has_input(const onnx::NodeProto& n, int input) const {
    return n.input_size() > input && !n.input(input).empty();
  }

  void index_graph();
  /// The input's shape; a symbolic height or width takes `height`/`width` (the metadata's), else
  /// kOnnxDefaultInputSize.
  Shape read_input(std::optional<long long> height, std::optional<long long> width);
  std::string input_name_;
  std::string step(const std::string& value);
  std::string read_conv(const onnx::NodeProto& n, ImportedLayer& layer, const std::string& role, int& k, int& s, int& p);
  void read_bn(const onnx::NodeProto& n, int channels, ImportedLayer& layer, const std::string& role);
  std::string read_residual(const std::string& value, const std::vector<int>& users);
  void push(LayerSpec spec, std::map<std::string, std::vector<float>> tensors = {}) {
    layers_.push_back({std::move(spec), std::move(tensors), 1.0});
  }
  Checkpoint build(const Shape& input) const;
};

std::vector<float> Reader::float_tensor(const onnx::NodeProto& n, int input, const std::vector<std::int64_t>& dims) const {
  if (!has_input(n, input)) fail(n, "input " + std::to_string(input) + " is missing");
  const std::string& name = n.input(input);
  const onnx::TensorProto* t = constant(name);
  if (!t) fail(n, "input '" + name + "' must be a constant (an initializer): augflow reads weights, not computed values");
  if (t->data_location() == onnx::TensorProto::EXTERNAL)
    fail(n, "the weights '" + name + "' are stored in an external file; save the model with its weights inside");
  const auto have = dims_of(*t);
  if (have != dims) {
    std::string want, got;
    for (auto d : dims) want += (want.empty() ? "" : "x") + std::to_string(d);
    for (auto d : have) got += (got.empty() ? "" : "x") + std::to_string(d);
    fail(n, "the constant '" + name + "' is " + (got.empty() ? "a scalar" : got) + " but " +
                (want.empty() ? "a scalar" : want) + " is needed here");
  }
  // The size the dims claim, checked against the data the file holds before anything is
  // allocated (a hostile file may claim any dims).
  std::size_t count = 1;
  for (auto d : dims) {
    if (d < 0 || d > (std::int64_t{1} << 31) || count > (std::size_t{1} << 31) / std::max<std::size_t>(1, d))
      fail(n, "the constant '" + name + "' has dimensions too large to be a weight");
    count *= static_cast<std::size_t>(d);
  }
  const std::size_t element = t->data_type() == onnx::TensorProto::DOUBLE ? sizeof(double) : sizeof(float);
  const std::size_t held = t->has_raw_data() ? t->raw_data().size() / element
                           : t->data_type() == onnx::TensorProto::DOUBLE ? static_cast<std::size_t>(t->double_data_size())
                                                                         : static_cast<std::size_t>(t->float_data_size());
  if (held != count)
    fail(n, "the constant '" + name + "' holds " + std::to_string(held) + " values, not the " + std::to_string(count) +
                " its dimensions give");
  std::vector<float> values(count);
  if (t->data_type() == onnx::TensorProto::FLOAT) {
    if (t->has_raw_data()) {
      if (t->raw_data().size() != count * sizeof(float))
        fail(n, "the constant '" + name + "' holds " + std::to_string(t->raw_data().size()) + " bytes, not " +
                    std::to_string(count * sizeof(float)));
      std::memcpy(values.data(), t->raw_data().data(), count * sizeof(float));
    } else {
      if (static_cast<std::size_t>(t->float_data_size()) != count)
        fail(n, "the constant '" + name + "' holds " + std::to_string(t->float_data_size()) + " values, not " +
                    std::to_string(count));
      std::copy(t->float_data().begin(), t->float_data().end(), values.begin());
    }
  } else if (t->data_type() == onnx::TensorProto::DOUBLE) {
    std::vector<double> d(count);
    if (t->has_raw_data() ? t->raw_data().size() != count * sizeof(double)
                          : static_cast<std::size_t>(t->double_data_size()) != count)
      fail(n, "the constant '" + name + "' does not hold " + std::to_string(count) + " doubles");
    if (t->has_raw_data())
      std::memcpy(d.data(), t->raw_data().data(), count * sizeof(double));
    else
      std::copy(t->double_data().begin(), t->double_data().end(), d.begin());
    std::transform(d.begin(), d.end(), values.begin(), [](double v) { return static_cast<float>(v); });
  } else {
    fail(n, "the constant '" + name + "' is not float32 (data type " + std::to_string(t->data_type()) +
                "); augflow reads float32 models");
  }
  for (float v : values)
    if (!std::isfinite(v)) fail(n, "the constant '" + name + "' holds a value that is not finite");
  return values;
}

std::vector<std::int64_t> Reader::int_tensor(const onnx::NodeProto& n, int input) const {
  if (!has_input(n, input)) fail(n, "input " + std::to_string(input) + " is missing");
  const onnx::TensorProto* t = constant(n.input(input));
  if (!t) fail(n, "input '" + n.input(input) + "' must be a constant");
  if (t->data_type() != onnx::TensorProto::INT64) fail(n, "input '" + n.input(input) + "' must be int64");
  std::size_t count = 1;
  for (auto d : t->dims()) {
    if (d < 0 || d > 16) fail(n, "input '" + n.input(input) + "' has an unexpected shape");
    count *= static_cast<std::size_t>(d);
  }
  std::vector<std::int64_t> values(count);
  if (t->has_raw_data()) {
    if (t->raw_data().size() != count * sizeof(std::int64_t)) fail(n, "input '" + n.input(input) + "' is malformed");
    std::memcpy(values.data(), t->raw_data().data(), count * sizeof(std::int64_t));
  } else {
    if (static_cast<std::size_t>(t->int64_data_size()) != count) fail(n, "input '" + n.input(input) + "' is malformed");
    std::copy(t->int64_data().begin(), t->int64_data().end(), values.begin());
  }
  return values;
}

void Reader::index_graph() {
  for (const auto& op : model_.opset_import())
    if (op.domain().empty() || op.domain() == "ai.onnx") opset_ = static_cast<int>(op.version());
  if (opset_ == 0) fail("the model imports no standard ONNX operator set");
  if (opset_ < 9 || opset_ > 18)
    fail("operator set " + std::to_string(opset_) + " is not supported (augflow reads opsets 9 to 18; re-export with "
         "opset 13)");
  for (const auto& t : graph_.initializer()) constants_[t.name()] = &t;
  for (int i = 0; i < graph_.node_size(); ++i) {
    const auto& n = node(i);
    // Every node the walk reaches is read through its first output.
    if (n.output_size() < 1 || n.output(0).empty()) fail(n, "the node has no output");
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      fail(n, "the operator domain '" + n.domain() + "' is not supported; " + kSupported);
    if (n.op_type() == "Constant") {
      const auto* value = attr(n, "value");
      if (!value || value->type() != onnx::AttributeProto::TENSOR || n.output_size() != 1)
        fail(n, "only Constant nodes holding a tensor are supported");
      constants_[n.output(0)] = &value->t();
      continue;
    }
    for (const auto& in : n.input())
      if (!in.empty() && !constants_.count(in)) consumers_[in].push_back(i);
  }
  if (graph_.output_size() != 1)
    fail("the graph has " + std::to_string(graph_.output_size()) + " outputs; a classifier has one (the logits)");
  output_ = graph_.output(0).name();
}

Shape Reader::read_input(std::optional<long long> height, std::optional<long long> width) {
  const onnx::ValueInfoProto* input = nullptr;
  for (const auto& in : graph_.input()) {
    if (constants_.count(in.name())) continue;  // older files list initializers as inputs
    if (input) fail("the graph has more than one input ('" + input->name() + "', '" + in.name() + "'); a classifier "
                    "takes one image batch");
    input = &in;
  }
  if (!input) fail("the graph has no input");
  const auto& type = input->type();
  if (!type.has_tensor_type() || type.tensor_type().elem_type() != onnx::TensorProto::FLOAT)
    fail("the input '" + input->name() + "' is not a float32 tensor");
  const auto& shape = type.tensor_type().shape();
  if (shape.dim_size() != 4)
    fail("the input '" + input->name() + "' has " + std::to_string(shape.dim_size()) +
         " dimensions; augflow reads image classifiers with N x C x H x W inputs");
  const auto known = [&](int i) { return shape.dim(i).has_dim_value() ? shape.dim(i).dim_value() : std::int64_t{-1}; };
  const std::int64_t c = known(1);
  if (c < 1 || c > kMaxDim)
    fail("the input '" + input->name() + "' must have a fixed channel count (dimension 1), found " +
         (c < 0 ? std::string("a symbolic one") : std::to_string(c)));
  Shape s{1, static_cast<int>(c), static_cast<int>(height.value_or(kOnnxDefaultInputSize)),
          static_cast<int>(width.value_or(kOnnxDefaultInputSize))};
  for (int i : {2, 3}) {
    const std::int64_t d = known(i);
    if (d == 0 || d > kMaxDim) fail("the input's dimension " + std::to_string(i) + " is " + std::to_string(d));
    if (d > 0) (i == 2 ? s.h : s.w) = static_cast<int>(d);
  }
  input_name_ = input->name();
  return s;
}

/// Reads a Conv node into `layer` under `role` ("" for a plain conv token): weight and bias.
/// Returns its output and sets its kernel, stride and padding.
std::string Reader::read_conv(const onnx::NodeProto& n, ImportedLayer& layer, const std::string& role, int& k, int& s,
                              int& p) {
  if (flat_) unsupported(n, "a convolution after a fully-connected layer");
  const onnx::TensorProto* w = has_input(n, 1) ? constant(n.input(1)) : nullptr;
  if (!w || w->dims_size() != 4) fail(n, "the weight must be a constant out x C x K x K tensor");
  const auto dims = dims_of(*w);
  for (auto d : dims)
    if (d < 1 || d > kMaxDim) fail(n, "the weight has a dimension of " + std::to_string(d));
  if (attr_int(n, "group", 1) != 1) unsupported(n, "grouped or depthwise convolution (group > 1)");
  for (auto d : attr_ints(n, "dilations", {1, 1}))
    if (d != 1) unsupported(n, "dilated convolution");
  const auto* pad_mode = attr(n, "auto_pad");
  if (pad_mode && pad_mode->s() != "NOTSET") unsupported(n, "auto_pad " + pad_mode->s() + " (give explicit pads)");
  if (dims[1] != shape_.c)
    fail(n, "the weight expects " + std::to_string(dims[1]) + " input channels but its input has " +
                std::to_string(shape_.c));
  if (dims[2] != dims[3]) unsupported(n, "a non-square kernel");
  const auto kernel = attr_ints(n, "kernel_shape", {dims[2], dims[3]});
  const auto strides = attr_ints(n, "strides", {1, 1});
  const auto pads = attr_ints(n, "pads", {0, 0, 0, 0});
  if (kernel.size() != 2 || kernel[0] != dims[2] || kernel[1] != dims[3]) fail(n, "kernel_shape does not match the weight");
  if (strides.size() != 2 || strides[0] != strides[1] || strides[0] < 1 || strides[0] > kMaxDim)
    unsupported(n, "unequal or invalid strides");
  if (pads.size() != 4 || std::adjacent_find(pads.begin(), pads.end(), std::not_equal_to<>()) != pads.end() ||
      pads[0] < 0 || pads[0] > kMaxDim)
    unsupported(n, "unequal or invalid padding (augflow pads every side the same)");
  k = static_cast<int>(dims[2]);
  s = static_cast<int>(strides[0]);
  p = static_cast<int>(pads[0]);
  const std::string prefix = role.empty() ? "" : role + ".";
  layer.tensors[prefix + "weight"] = float_tensor(n, 1, dims);
  layer.tensors[prefix + "bias"] =
      has_input(n, 2) ? float_tensor(n, 2, {dims[0]}) : std::vector<float>(static_cast<std::size_t>(dims[0]), 0.0f);
  const std::int64_t ho = (shape_.h + 2 * p - k) / s + 1, wo = (shape_.w + 2 * p - k) / s + 1;
  if (shape_.h + 2 * p < k || shape_.w + 2 * p < k || ho < 1 || wo < 1)
    fail(n, "the " + std::to_string(k) + "x" + std::to_string(k) + " kernel does not fit its " + std::to_string(shape_.h) +
                "x" + std::to_string(shape_.w) + " input");
  shape_ = {1, static_cast<int>(dims[0]), static_cast<int>(ho), static_cast<int>(wo)};
  return n.output(0);
}

/// Reads a BatchNormalization node into `layer` under `role`. Its epsilon is folded into the
/// variance so that augflow's 1e-5 gives the same sqrt(var + eps).
void Reader::read_bn(const onnx::NodeProto& n, int channels, ImportedLayer& layer, const std::string& role) {
  if (attr_int(n, "training_mode", 0) != 0) unsupported(n, "training_mode = 1");
  const std::int64_t c = channels;
  const std::string prefix = role.empty() ? "" : role + ".";
  const float eps = attr_float(n, "epsilon", 1e-5f);
  auto var = float_tensor(n, 4, {c});
  for (float& v : var) {
    v = static_cast<float>(static_cast<double>(v) + eps - BatchNorm::kEps);
    if (!(v + BatchNorm::kEps > 0)) fail(n, "a variance plus epsilon is not positive");
  }
  layer.tensors[prefix + "gamma"] = float_tensor(n, 1, {c});
  layer.tensors[prefix + "beta"] = float_tensor(n, 2, {c});
  layer.tensors[prefix + "mean"] = float_tensor(n, 3, {c});
  layer.tensors[prefix + "var"] = std::move(var);
}

/// One step of the walk from `value`, the output of what has been read so far; returns the
/// value after the layers it read.
std::string Reader::step(const std::string& value) {
  const auto u = users(value);
  if (u.empty()) fail("the value '" + value + "' is not used and is not the graph's output '" + output_ + "'");
  if (u.size() == 2) return read_residual(value, u);
  if (u.size() > 2) fail("the value '" + value + "' is read by " + std::to_string(u.size()) + " nodes; " + kSupported);
  const onnx::NodeProto& n = node(u[0]);
  const std::string& op = n.op_type();
  if (n.output_size() < 1 || n.input(0) != value) unsupported(n, "an input other than the running value '" + value + "'");
  const std::string& out = n.output(0);

  if (op == "Conv") {
    ImportedLayer layer;
    int k, s, p;
    read_conv(n, layer, "", k, s, p);
    layer.spec = {"conv", {{"out", shape_.c}, {"k", k}, {"s", s}, {"p", p}}};
    layers_.push_back(std::move(layer));
    return out;
  }
  if (op == "BatchNormalization") {
    ImportedLayer layer;
    read_bn(n, shape_.c, layer, "");
    layer.spec = {"bn", {}};
    layers_.push_back(std::move(layer));
    return out;
  }
  if (op == "Relu") return push({"relu", {}}), out;
  if (op == "Tanh") return push({"tanh", {}}), out;
  if (op == "LeakyRelu") {
    const float a = attr_float(n, "alpha", 0.01f);
    if (!(a >= 0.0f && a < 1.0f)) unsupported(n, "a leaky slope outside [0, 1)");
    push({"lrelu", {{"a", from_float(a)}}});
    return out;
  }
  if (op == "MaxPool" || op == "AveragePool") {
    if (flat_) unsupported(n, "pooling after a fully-connected layer");
    const auto kernel = attr_ints(n, "kernel_shape", {});
    if (kernel.size() != 2 || kernel[0] != kernel[1] || kernel[0] < 1 || kernel[0] > kMaxDim)
      unsupported(n, "a kernel that is not square");
    const std::int64_t k = kernel[0];
    const auto strides = attr_ints(n, "strides", {1, 1});
    const auto pads = attr_ints(n, "pads", {0, 0, 0, 0});
    if (strides.size() != 2 || strides[0] != strides[1] || strides[0] < 1 || strides[0] > kMaxDim)
      unsupported(n, "unequal or invalid strides");
    if (pads.size() != 4 || std::adjacent_find(pads.begin(), pads.end(), std::not_equal_to<>()) != pads.end() ||
        pads[0] < 0)
      unsupported(n, "unequal or invalid padding");
    if (attr_int(n, "ceil_mode", 0) != 0) unsupported(n, "ceil_mode = 1");
    for (auto d : attr_ints(n, "dilations", {1, 1}))
      if (d != 1) unsupported(n, "dilated pooling");
    const std::int64_t s = strides[0], p = pads[0];
    if (op == "AveragePool" && (s != k || p != 0)) unsupported(n, "average pooling with a stride other than its kernel, or padding");
    if (op == "MaxPool" && 2 * p > k) unsupported(n, "padding larger than half the kernel");
    if (shape_.h + 2 * p < k || shape_.w + 2 * p < k) fail(n, "the window does not fit its input");
    shape_.h = static_cast<int>((shape_.h + 2 * p - k) / s + 1);
    shape_.w = static_cast<int>((shape_.w + 2 * p - k) / s + 1);
    if (op == "MaxPool")
      push({"pool", {{"k", static_cast<double>(k)}, {"s", static_cast<double>(s)}, {"p", static_cast<double>(p)}}});
    else
      push({"avgpool", {{"k", static_cast<double>(k)}}});
    return out;
  }
  if (op == "GlobalAveragePool" || op == "ReduceMean") {
    if (flat_) unsupported(n, "pooling after a fully-connected layer");
    if (op == "ReduceMean") {
      std::vector<std::int64_t> axes = attr_ints(n, "axes", {});
      if (has_input(n, 1)) axes = int_tensor(n, 1);
      std::sort(axes.begin(), axes.end());
      if (axes != std::vector<std::int64_t>{2, 3} && axes != std::vector<std::int64_t>{-2, -1})
        unsupported(n, "a mean over axes other than H and W");
      flat_ = attr_int(n, "keepdims", 1) == 0;
    }
    shape_.h = shape_.w = 1;
    push({"gap", {}});
    return out;
  }
  if (op == "Reshape" && flat_) {
    // N x C -> N x C x 1 x 1 (augflow writes it before a spatial layer that follows an fc).
    const auto target = int_tensor(n, 1);
    if (target.size() != 4 || !(target[0] == 0 || target[0] == -1) || !(target[1] == -1 || target[1] == shape_.c) ||
        target[2] != 1 || target[3] != 1)
      unsupported(n, "a reshape of N x C other than to N x C x 1 x 1");
    flat_ = false;
    return out;
  }
  if (op == "Flatten" || op == "Reshape") {
    if (op == "Flatten" && attr_int(n, "axis", 1) != 1) unsupported(n, "flattening at an axis other than 1");
    if (op == "Reshape") {
      const auto target = int_tensor(n, 1);
      const std::int64_t features = static_cast<std::int64_t>(shape_.per_sample());
      if (target.size() != 2 || !(target[0] == 0 || target[0] == -1 || target[0] == 1) ||
          !(target[1] == -1 || target[1] == features))
        unsupported(n, "a reshape other than to (N, -1)");
    }
    const int next = only_user(out);
    const bool before_fc = op == "Flatten" && next >= 0 &&
                           (node(next).op_type() == "Gemm" || node(next).op_type() == "MatMul");
    if (!before_fc) push({"flatten", {}});  // fc flattens its input itself
    shape_ = {1, static_cast<int>(shape_.per_sample()), 1, 1};
    flat_ = true;
    return out;
  }
  if (op == "Unsqueeze") {
    std::vector<std::int64_t> axes = attr_ints(n, "axes", {});
    if (has_input(n, 1)) axes = int_tensor(n, 1);
    if (!flat_ || axes != std::vector<std::int64_t>{2, 3}) unsupported(n, "an unsqueeze other than N x C -> N x C x 1 x 1");
    flat_ = false;
    return out;
  }
  if (op == "Gemm" || op == "MatMul") {
    const std::int64_t features = static_cast<std::int64_t>(shape_.per_sample());
    const onnx::TensorProto* w = has_input(n, 1) ? constant(n.input(1)) : nullptr;
    if (!w || w->dims_size() != 2) fail(n, "the weight must be a constant 2-D tensor");
    const bool trans_b = op == "Gemm" && attr_int(n, "transB", 0) != 0;
    if (op == "Gemm" && (attr_int(n, "transA", 0) != 0 || attr_float(n, "alpha", 1.0f) != 1.0f ||
                         attr_float(n, "beta", 1.0f) != 1.0f))
      unsupported(n, "transA, alpha or beta other than 0, 1, 1");
    const std::int64_t rows = w->dims(0), cols = w->dims(1);
    const std::int64_t out_features = trans_b ? rows : cols, in_features = trans_b ? cols : rows;
    if (in_features != features)
      fail(n, "the weight takes " + std::to_string(in_features) + " features but its input has " +
                  std::to_string(features) + " (C x H x W = " + std::to_string(shape_.c) + " x " +
                  std::to_string(shape_.h) + " x " + std::to_string(shape_.w) + ")");
    if (out_features < 1 || out_features > (1 << 20)) fail(n, "the layer has " + std::to_string(out_features) + " outputs");
    std::vector<float> stored = float_tensor(n, 1, {rows, cols});
    std::vector<float> weight(stored.size());
    if (trans_b) {
      weight = std::move(stored);
    } else {  // [in, out] -> augflow's [out, in]
      for (std::int64_t i = 0; i < in_features; ++i)
        for (std::int64_t o = 0; o < out_features; ++o) weight[o * in_features + i] = stored[i * out_features + o];
    }
    std::vector<float> bias(static_cast<std::size_t>(out_features), 0.0f);
    std::string result = out;
    if (op == "Gemm" && has_input(n, 2)) {
      const onnx::TensorProto* c = constant(n.input(2));
      if (!c) fail(n, "the bias must be a constant");
      std::vector<std::int64_t> dims = dims_of(*c);
      if (dims.size() == 2 && dims[0] == 1) dims.erase(dims.begin());
      if (dims != std::vector<std::int64_t>{out_features}) fail(n, "the bias must hold one value per output");
      bias = float_tensor(n, 2, dims_of(*c));
    } else if (op == "MatMul") {
      const int add = only_user(out);
      if (add >= 0 && node(add).op_type() == "Add" && node(add).input_size() == 2) {
        const auto& a = node(add);
        const int other = a.input(0) == out ? 1 : 0;
        const onnx::TensorProto* c = constant(a.input(other));
        if (c && dims_of(*c) == std::vector<std::int64_t>{out_features}) {
          bias = float_tensor(a, other, {out_features});
          result = a.output(0);
        }
      }
    }
    push({"fc", {{"out", static_cast<double>(out_features)}}}, {{"weight", std::move(weight)}, {"bias", std::move(bias)}});
    shape_ = {1, static_cast<int>(out_features), 1, 1};
    flat_ = true;
    return result;
  }
  if (op == "Dropout") {
    float ratio = attr_float(n, "ratio", 0.5f);
    if (has_input(n, 1)) ratio = float_tensor(n, 1, {}).front();
    if (!(ratio >= 0.0f && ratio < 1.0f)) unsupported(n, "a dropout ratio outside [0, 1)");
    push({"drop", {{"p", from_float(ratio)}}});
    return out;
  }
  if (op == "Identity") {
    // augflow writes DropConnect as an Identity named after its token ("3/dc0.5").
    const std::string name = n.name().substr(n.name().find('/') + 1);
    if (name.size() > 2 && name.compare(0, 2, "dc") == 0) {
      char* end = nullptr;
      const double p = std::strtod(name.c_str() + 2, &end);
      if (end && *end == '\0' && p >= 0.0 && p < 1.0) push({"dc", {{"p", p}}});
    }
    return out;
  }
  if (op == "Softmax" || op == "LogSoftmax") {
    if (out != output_) unsupported(n, "a softmax other than the graph's last node");
    return out;  // augflow's outputs are logits; predict and eval apply the softmax
  }
  unsupported(n, "this operator is not supported");
}

std::string Reader::read_residual(const std::string& value, const std::vector<int>& u) {
  if (flat_) fail("the value '" + value + "' is read by two nodes after a fully-connected layer; " + kSupported);
  const Shape in = shape_;
  // Each branch: the nodes from `value` up to the Add that joins them.
  std::vector<int> chains[2];
  int join = -1;
  for (int b = 0; b < 2; ++b) {
    int at = u[b];
    while (node(at).op_type() != "Add") {
      chains[b].push_back(at);
      if (chains[b].size() > 8 || node(at).output_size() < 1) break;
      at = only_user(node(at).output(0));
      if (at < 0) break;
    }
    if (at < 0 || node(at).op_type() != "Add")
      fail("the value '" + value + "' is read by two nodes that do not meet in an Add; augflow reads residual "
           "blocks only (" + std::string(kSupported) + ")");
    if (join >= 0 && at != join) fail("the two paths from '" + value + "' end in different Add nodes");
    join = at;
  }
  const onnx::NodeProto& add = node(join);
  if (add.input_size() != 2) unsupported(add, "an Add with other than two inputs");
  const auto count_convs = [&](const std::vector<int>& chain) {
    return std::count_if(chain.begin(), chain.end(), [&](int i) { return node(i).op_type() == "Conv"; });
  };
  const int main = count_convs(chains[0]) >= count_convs(chains[1]) ? 0 : 1;
  const std::vector<int>& branch = chains[main];
  const std::vector<int>& shortcut = chains[1 - main];

  ImportedLayer layer;
  int bn_count = 0, conv_count = 0;
  std::size_t i = 0;
  const auto at = [&](const std::vector<int>& chain, std::size_t j, const char* op) -> const onnx::NodeProto* {
    return j < chain.size() && node(chain[j]).op_type() == op ? &node(chain[j]) : nullptr;
  };
  const auto conv_then_bn = [&](const std::vector<int>& chain, std::size_t& j, const std::string& role, int& k, int& s,
                                int& p) {
    const onnx::NodeProto* conv = at(chain, j, "Conv");
    if (!conv) {
      if (chain.empty()) fail("the two paths from '" + value + "' are not a residual block; " + kSupported);
      const onnx::NodeProto& n = node(chain[std::min(j, chain.size() - 1)]);
      unsupported(n, "the residual block from '" + value + "' does not have augflow's form (conv3x3, batch norm, relu, "
                     "conv3x3, batch norm on the branch; the input or a 1x1 conv with batch norm on the shortcut)");
    }
    read_conv(*conv, layer, role, k, s, p);
    ++conv_count;
    ++j;
    if (const onnx::NodeProto* bn = at(chain, j, "BatchNormalization")) {
      read_bn(*bn, shape_.c, layer, role + "_bn");
      ++bn_count;
      ++j;
    }
  };
  int k1, s1, p1, k2, s2, p2;
  conv_then_bn(branch, i, "conv1", k1, s1, p1);
  if (!at(branch, i, "Relu"))
    unsupported(node(branch[std::min(i, branch.size() - 1)]), "expected the Relu between the branch's convolutions");
  // (branch is not empty here: conv_then_bn read a Conv from it.)
  ++i;
  conv_then_bn(branch, i, "conv2", k2, s2, p2);
  const int out = shape_.c;
  const Shape after = shape_;
  if (const onnx::NodeProto* mul = at(branch, i, "Mul")) {
    const int scale = mul->input(0) == node(branch[i - 1]).output(0) ? 1 : 0;
    const float g = float_tensor(*mul, scale, {}).front();
    if (!(g > 0.0f && g <= 1.0f)) unsupported(*mul, "a branch scale outside (0, 1] (stochastic depth's survival)");
    layer.survival = from_float(g);
    ++i;
  }
  if (i != branch.size())
    unsupported(node(branch[i]), "the residual branch has more than two convolutions (augflow's res blocks are the basic "
                                 "blocks of resnet18/34, not bottlenecks)");
  if (k1 != 3 || p1 != 1 || k2 != 3 || p2 != 1 || s2 != 1)
    unsupported(node(branch.front()), "a residual branch other than conv3x3 (stride s, pad 1) then conv3x3 (stride 1, pad 1)");
  const bool needs_projection = out != in.c || s1 != 1;
  if (needs_projection != !shortcut.empty())
    fail(node(join), std::string("the block from '") + value + "' " +
                         (needs_projection ? "changes the shape but has no projection shortcut"
                                           : "keeps the shape but projects its shortcut") +
                         "; augflow's res blocks project exactly when channels or stride change");
  if (!shortcut.empty()) {
    std::size_t j = 0;
    shape_ = in;
    int kp, sp, pp;
    conv_then_bn(shortcut, j, "proj", kp, sp, pp);
    if (j != shortcut.size() || kp != 1 || pp != 0 || sp != s1)
      unsupported(node(shortcut.front()), "a shortcut other than a 1x1 convolution with the block's stride (and batch norm)");
  }
  shape_ = after;
  const int expected_bn = shortcut.empty() ? 2 : 3;
  if (bn_count != 0 && bn_count != expected_bn)
    unsupported(node(branch.front()), "batch norm after some of the block's convolutions but not all");
  const bool bn = bn_count != 0;
  if (bn) {
    // augflow's convolutions before batch norm have no bias: fold it into the running mean.
    for (const std::string role : {"conv1", "conv2", "proj"}) {
      auto bias = layer.tensors.find(role + ".bias");
      if (bias == layer.tensors.end()) continue;
      auto& mean = layer.tensors.at(role + "_bn.mean");
      for (std::size_t c = 0; c < mean.size(); ++c) mean[c] -= bias->second[c];
      layer.tensors.erase(bias);
    }
  }
  const int relu = only_user(add.output(0));
  if (relu < 0 || node(relu).op_type() != "Relu") unsupported(add, "a residual Add that is not followed by a Relu");
  layer.spec = {"res", {{"out", out}, {"s", s1}}};
  if (!bn) layer.spec.args["bn"] = 0;
  layers_.push_back(std::move(layer));
  return node(relu).output(0);
}

/// Copies `values` into `tensor`, which the network built with the same number of floats.
void load_into(Tensor& tensor, const std::vector<float>& values, const std::string& what) {
  if (tensor.size() != values.size())
    throw ShapeError(what + ": " + std::to_string(values.size()) + " values for a tensor of " + std::to_string(tensor.size()));
  std::copy(values.begin(), values.end(), tensor.data());
}

void load_conv(Conv2d& conv, const ImportedLayer& l, const std::string& role) {
  const std::string prefix = role.empty() ? "" : role + ".";
  load_into(conv.weight().value, l.tensors.at(prefix + "weight"), prefix + "weight");
  if (conv.has_bias()) load_into(conv.bias().value, l.tensors.at(prefix + "bias"), prefix + "bias");
}

void load_bn(BatchNorm& bn, const ImportedLayer& l, const std::string& role) {
  const std::string prefix = role.empty() ? "" : role + ".";
  load_into(bn.gamma().value, l.tensors.at(prefix + "gamma"), prefix + "gamma");
  load_into(bn.beta().value, l.tensors.at(prefix + "beta"), prefix + "beta");
  load_into(bn.running_mean(), l.tensors.at(prefix + "mean"), prefix + "mean");
  load_into(bn.running_var(), l.tensors.at(prefix + "var"), prefix + "var");
}

Checkpoint Reader::build(const Shape& input) const {
  ModelSpec spec;
  std::vector<double> survivals;
  for (const auto& l : layers_) {
    spec.layers.push_back(l.spec);
    if (l.spec.kind == "res") survivals.push_back(l.survival);
  }
  if (spec.layers.empty()) fail("the graph has no layers augflow can read");
  // Stochastic depth: the scales must be the linear decay the last block's scale implies.
  if (!survivals.empty() && survivals.back() < 1.0) {
    spec.survival = survivals.back();
    const double blocks = static_cast<double>(survivals.size());
    for (std::size_t b = 0; b < survivals.size(); ++b) {
      const double expected = 1.0 - ((b + 1) / blocks) * (1.0 - spec.survival);
      if (std::abs(survivals[b] - expected) > 1e-6)
        fail("the residual blocks' branch scales are not stochastic depth's linear decay (block " + std::to_string(b + 1) +
             " has " + format_number(survivals[b]) + ", expected " + format_number(expected) + ")");
    }
  } else {
    for (double s : survivals)
      if (s != 1.0) fail("only the last residual blocks' branch scales are below 1; not stochastic depth's decay");
  }
  // The spec must print and parse back (canonical numbers), as a checkpoint's spec does.
  const std::string text = print_model_spec(spec);
  const ModelSpec canonical = parse_model_spec(text, 0);
  const int classes = shape_.c;
  Net net(canonical, input, classes);
  if (net.layer_count() != layers_.size()) throw Error("ONNX import: layer count mismatch (internal error)");
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = net.layer(i);
    const ImportedLayer& l = layers_[i];
    if (auto* conv = dynamic_cast<Conv2d*>(&layer)) {
      load_conv(*conv, l, "");
    } else if (auto* bn = dynamic_cast<BatchNorm*>(&layer)) {
      load_bn(*bn, l, "");
    } else if (auto* fc = dynamic_cast<Dense*>(&layer)) {
      load_into(fc->weight().value, l.tensors.at("weight"), "fc weight");
      load_into(fc->bias().value, l.tensors.at("bias"), "fc bias");
    } else if (auto* res = dynamic_cast<Residual*>(&layer)) {
      load_conv(res->conv1(), l, "conv1");
      load_conv(res->conv2(), l, "conv2");
      if (res->bn1()) load_bn(*res->bn1(), l, "conv1_bn");
      if (res->bn2()) load_bn(*res->bn2(), l, "conv2_bn");
      if (res->projection()) load_conv(*res->projection(), l, "proj");
      if (res->projection_bn()) load_bn(*res->projection_bn(), l, "proj_bn");
    }
  }
  Checkpoint ckpt;
  store_net(net, ckpt);
  ckpt.classes = classes;
  return ckpt;
}

OnnxModel Reader::read() {
  index_graph();
  OnnxModel result;
  for (const auto& entry : model_.metadata_props()) result.metadata[entry.key()] = entry.value();
  result.producer = model_.producer_name() + (model_.producer_version().empty() ? "" : " " + model_.producer_version());
  const auto meta = [&](const char* key) -> const std::string* {
    const auto it = result.metadata.find(key);
    return it == result.metadata.end() ? nullptr : &it->second;
  };
  const auto integer = [&](const char* key, long long max) -> std::optional<long long> {
    const std::string* text = meta(key);
    if (!text) return std::nullopt;
    char* end = nullptr;
    const long long v = std::strtoll(text->c_str(), &end, 10);
    if (text->empty() || *end != '\0' || v < 0 || v > max) return std::nullopt;
    return v;
  };

  const Shape input = read_input(integer("input_height", kMaxDim), integer("input_width", kMaxDim));
  shape_ = input;
  std::string value = input_name_;
  // Every step reads at least one node, so the walk ends within the node count.
  for (int steps = 0; value != output_; ++steps) {
    if (steps > graph_.node_size()) fail("the graph's nodes do not lead from its input to its output '" + output_ + "'");
    value = step(value);
  }
  result.checkpoint = build(input);
  Checkpoint& ckpt = result.checkpoint;
  ckpt.meta = {{"source", "onnx"}, {"producer", result.producer}};
  if (const auto* names = meta("class_names")) {
    try {
      std::vector<std::string> list;
      for (const auto& n : nlohmann::json::parse(*names)) list.push_back(n.get<std::string>());
      if (static_cast<int>(list.size()) == ckpt.classes) ckpt.class_names = std::move(list);
    } catch (const nlohmann::json::exception&) {
      // Names that do not parse are ignored: the classes are numbered instead.
    }
  }
  if (ckpt.class_names.empty())
    for (int k = 0; k < ckpt.classes; ++k) ckpt.class_names.push_back(std::to_string(k));
  if (const auto* aug = meta("augmentation")) ckpt.augmentation = *aug;
  ckpt.seed = static_cast<std::uint64_t>(integer("seed", std::numeric_limits<long long>::max()).value_or(0));
  ckpt.epoch = integer("epoch", std::numeric_limits<long long>::max()).value_or(0);
  return result;
}

}  // namespace

OnnxModel import_onnx_bytes(std::span<const std::uint8_t> bytes, const std::string& path) {
  onnx::ModelProto model;
  if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      !model.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw DataError(path, "not an ONNX model (its protobuf does not parse)");
  if (!model.has_graph()) throw DataError(path, "the ONNX model has no graph");
  try {
    return Reader(model, path).read();
  } catch (const DataError&) {
    throw;
  } catch (const Error& e) {
    // Shape and spec errors of the network it describes: the file is what is wrong.
    throw DataError(path, e.what());
  }
}

OnnxModel import_onnx(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot open ONNX model " + path + ": no such file or not readable");
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw IoError("cannot read ONNX model " + path);
  return import_onnx_bytes(bytes, path);
}

}  // namespace augflow::model
