// ONNX export and import: OpenCV's DNN module (another program's reader) loads what augflow
// writes and computes the same logits; augflow reads its own files back bit for bit, and reads
// torchvision's ResNets as PyTorch exports them, with PyTorch's outputs; a file augflow cannot
// represent is a DataError naming the node.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <onnx/onnx_pb.h>
#include <opencv2/dnn.hpp>

#include "common/error.hpp"
#include "fixtures.hpp"
#include "model/batch_norm.hpp"
#include "model/net.hpp"
#include "model/onnx.hpp"
#include "pipeline/model_io.hpp"
#include "pipeline/predictor.hpp"
#include "tests/model_fixtures.hpp"

namespace augflow::test {
namespace {

namespace fs = std::filesystem;
using model::Checkpoint;
using model::Net;
using model::Shape;
using model::Tensor;

/// A checkpoint of `spec` with random weights and batch-norm statistics away from their
/// initial values (so that a reader that ignored them would be caught).
Checkpoint random_checkpoint(const std::string& spec, Shape input, int classes, std::uint64_t seed) {
  Net net(model::parse_model_spec(spec, classes), input, classes);
  net.initialize(seed);
  Rng rng({seed, 1, 0});
  // Batch norm's state() is {running mean, running variance}, so the tensors alternate.
  const auto state = net.state();
  for (std::size_t i = 0; i < state.size(); ++i)
    for (std::size_t j = 0; j < state[i]->size(); ++j)
      (*state[i])[j] = i % 2 == 0 ? static_cast<float>(rng.normal() * 0.2) : static_cast<float>(rng.uniform(0.5, 1.5));
  for (model::Param* p : net.params())
    if (p->name.find("gamma") != std::string::npos)
      for (std::size_t j = 0; j < p->value.size(); ++j) p->value[j] = static_cast<float>(rng.uniform(0.5, 1.5));
  Checkpoint ckpt;
  model::store_net(net, ckpt);
  ckpt.classes = classes;
  for (int k = 0; k < classes; ++k) ckpt.class_names.push_back("class " + std::to_string(k));
  ckpt.augmentation = "pad_crop(2," + std::to_string(input.h) + ") | hflip | normalize(none)";
  ckpt.seed = seed;
  ckpt.epoch = 3;
  return ckpt;
}

/// augflow's test-time logits of `ckpt` for `x`.
std::vector<float> augflow_logits(const Checkpoint& ckpt, const Tensor& x) {
  Net net(model::parse_model_spec(ckpt.model_spec, ckpt.classes), ckpt.input, ckpt.classes);
  model::restore_net(net, ckpt);
  return net.forward(x, {model::Mode::test, 0, 0, 0, nullptr}).values();
}

/// OpenCV DNN's logits for the ONNX bytes and `x`.
std::vector<float> opencv_logits(const std::string& bytes, const Tensor& x) {
  cv::dnn::Net net = cv::dnn::readNetFromONNX(bytes.data(), bytes.size());
  const Shape& s = x.shape();
  const int dims[] = {s.n, s.c, s.h, s.w};
  cv::Mat blob(4, dims, CV_32F, const_cast<float*>(x.data()));
  net.setInput(blob);
  cv::Mat out = net.forward();
  out = out.reshape(1, 1);
  return {out.begin<float>(), out.end<float>()};
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double most = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) most = std::max(most, std::abs(double(a[i]) - b[i]));
  return most;
}

void expect_opencv_matches(const Checkpoint& ckpt, std::uint64_t seed) {
  const std::string bytes = model::onnx_model_bytes(ckpt);
  const Tensor x = random_tensor({3, ckpt.input.c, ckpt.input.h, ckpt.input.w}, seed);
  const auto ours = augflow_logits(ckpt, x);
  const auto theirs = opencv_logits(bytes, x);
  EXPECT_LE(max_abs_difference(ours, theirs), 1e-4) << ckpt.model_spec;
}

TEST(Onnx, OpenCvLoadsEveryPresetWithTheSameLogits) {
  const Shape grey{0, 1, 28, 28};
  for (const std::string preset : {"twolayer", "mlp", "cnn-small"}) {
    SCOPED_TRACE(preset);
    expect_opencv_matches(random_checkpoint(preset, grey, 10, 7), 11);
  }
  SCOPED_TRACE("resnet-mini");
  expect_opencv_matches(random_checkpoint("resnet-mini", {0, 3, 32, 32}, 5, 8), 12);
}

TEST(Onnx, OpenCvLoadsEveryLayerKind) {
  // Every token of the spec language at least once, with non-default arguments.
  const char* specs[] = {
      "conv8k3s2p1-bn-lrelu0.2-pool3s2p1-conv8k1-tanh-avgpool2-flatten-fc16-bn-relu-drop0.3-dc0.5-fc4",
      "conv6k5p2-relu-pool2-res6-res12s2-res12-gap-fc4-sd0.5",
      "conv6k3p1-res6b0-res10s2b0-pool2s1-gap-bn-fc8-relu-fc4",
      "fc12-relu-conv4k1-bn-relu-gap-fc4",  // a convolution after an fc (Unsqueeze to N x C x 1 x 1)
  };
  for (const char* spec : specs) {
    SCOPED_TRACE(spec);
    expect_opencv_matches(random_checkpoint(spec, {0, 3, 20, 20}, 4, 21), 22);
  }
}

/// A random valid spec: a convolutional part, a pooling or flattening step, a dense part and
/// the head. Draws again until the network fits the input.
std::string random_spec(Rng& rng, int classes, Shape input) {
  for (;;) {
    std::string spec;
    const auto add = [&](const std::string& token) { spec += (spec.empty() ? "" : "-") + token; };
    const auto pick = [&](int n) { return static_cast<int>(rng.uniform_int(0, n - 1)); };
    const int convs = pick(5);
    int res = 0;
    for (int i = 0; i < convs; ++i) {
      switch (pick(7)) {
        case 0: add("conv" + std::to_string(2 + pick(6)) + "k" + std::to_string(1 + 2 * pick(3)) + "p" + std::to_string(pick(2))); break;
        case 1: add("conv" + std::to_string(2 + pick(6)) + "k3s2p1"); break;
        case 2: add("bn"); break;
        case 3: add(pick(2) ? "relu" : "lrelu0.1"); break;
        case 4: add(pick(2) ? "pool2" : "pool3s2p1"); break;
        case 5: add("res" + std::to_string(2 + pick(6)) + (pick(2) ? "s2" : "") + (pick(2) ? "b0" : "")), ++res; break;
        default: add(pick(2) ? "tanh" : "drop0.25"); break;
      }
    }
    switch (pick(3)) {
      case 0: add("gap"); break;
      case 1: add("flatten"); break;
      default: break;
    }
    for (int i = pick(3); i > 0; --i) {
      switch (pick(4)) {
        case 0: add("fc" + std::to_string(4 + pick(12))); break;
        case 1: add("bn"); break;
        case 2: add("relu"); break;
        default: add("dc0.25-fc" + std::to_string(4 + pick(12))); break;
      }
    }
    add("fc" + std::to_string(classes));
    if (res && pick(2)) add("sd0.7");
    try {
      Net net(model::parse_model_spec(spec, classes), input, classes);
      return spec;
    } catch (const Error&) {
      continue;  // does not fit the input: draw again
    }
  }
}

TEST(Onnx, OpenCvMatchesOnRandomSpecs) {
  Rng rng({2026, 0, 0});
  const Shape input{0, 3, 16, 16};
  for (int i = 0; i < 40; ++i) {
    const std::string spec = random_spec(rng, 5, input);
    SCOPED_TRACE(spec);
    expect_opencv_matches(random_checkpoint(spec, input, 5, 100 + i), 200 + i);
  }
}

TEST(Onnx, ReadsItsOwnExportBitForBit) {
  Rng rng({77, 0, 0});
  std::vector<std::string> specs = {"twolayer", "mlp", "cnn-small", "resnet-mini",
                                    "conv8k3s2p1-bn-lrelu0.2-pool3s2p1-avgpool2-flatten-fc16-bn-drop0.3-dc0.5-fc4"};
  for (int i = 0; i < 20; ++i) specs.push_back(random_spec(rng, 4, {0, 3, 16, 16}));
  for (const auto& spec : specs) {
    SCOPED_TRACE(spec);
    const bool grey = spec == "twolayer" || spec == "mlp" || spec == "cnn-small";
    const Shape input = grey ? Shape{0, 1, 28, 28} : spec == "resnet-mini" ? Shape{0, 3, 32, 32} : Shape{0, 3, 16, 16};
    const int classes = grey ? 10 : 4;
    const Checkpoint ckpt = random_checkpoint(spec, input, classes, 5);
    const std::string bytes = model::onnx_model_bytes(ckpt, {{"extra", "kept"}});
    const auto read = model::import_onnx_bytes({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()}, "m.onnx");
    const Checkpoint& back = read.checkpoint;
    EXPECT_EQ(back.model_spec, ckpt.model_spec);
    EXPECT_EQ(back.input, ckpt.input);
    EXPECT_EQ(back.classes, ckpt.classes);
    EXPECT_EQ(back.class_names, ckpt.class_names);
    EXPECT_EQ(back.augmentation, ckpt.augmentation);
    EXPECT_EQ(back.seed, ckpt.seed);
    EXPECT_EQ(back.epoch, ckpt.epoch);
    EXPECT_EQ(read.metadata.at("extra"), "kept");
    expect_same_tensors(back.params, ckpt.params);
    expect_same_tensors(back.state, ckpt.state);
  }
}

TEST(Onnx, ExportWritesAFileAtomicallyAndLoadModelReadsIt) {
  TempDir dir;
  Checkpoint ckpt = random_checkpoint("cnn-small", {0, 1, 28, 28}, 10, 3);
  ckpt.augmentation = "pad_crop(2,28) | hflip | normalize(mean=0.5,std=0.25)";
  const std::string path = (dir.path() / "model.onnx").string();
  pipeline::export_model(ckpt, path);
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1u) << "a temporary file was left behind";
  const auto read = model::import_onnx(path);
  EXPECT_EQ(read.metadata.at("channel_order"), "grey");
  EXPECT_EQ(read.metadata.at("normalize_mean"), "[0.5]");
  EXPECT_EQ(read.metadata.at("normalize_std"), "[0.25]");
  EXPECT_EQ(read.metadata.at("model_spec"), ckpt.model_spec);
  EXPECT_EQ(read.metadata.at("augflow_version"), AUGFLOW_VERSION_STRING);
  const Checkpoint loaded = pipeline::load_model(path);
  EXPECT_EQ(loaded.augmentation, ckpt.augmentation);
  expect_same_tensors(loaded.params, ckpt.params);
  // An export into a folder that does not exist is an IoError naming the file.
  expect_throws_with([&] { pipeline::export_model(ckpt, (dir.path() / "no/such/model.onnx").string()); }, "model.onnx");
}

/// A one-node graph N x 3 x 8 x 8 -> `op` -> Gemm head, to test what the reader refuses.
std::string graph_with(const std::string& op) {
  onnx::ModelProto m;
  m.set_ir_version(7);
  m.add_opset_import()->set_version(13);
  auto& g = *m.mutable_graph();
  auto add_value = [](onnx::ValueInfoProto& v, const std::string& name, std::vector<long> dims) {
    v.set_name(name);
    auto& t = *v.mutable_type()->mutable_tensor_type();
    t.set_elem_type(onnx::TensorProto::FLOAT);
    for (long d : dims) t.mutable_shape()->add_dim()->set_dim_value(d);
  };
  add_value(*g.add_input(), "x", {1, 3, 8, 8});
  add_value(*g.add_output(), "y", {1, 2});
  auto& n = *g.add_node();
  n.set_op_type(op);
  n.set_name("the_node");
  n.add_input("x");
  n.add_output("h");
  auto& f = *g.add_node();
  f.set_op_type("Flatten");
  f.add_input("h");
  f.add_output("f");
  auto& gemm = *g.add_node();
  gemm.set_op_type("Gemm");
  gemm.set_name("head");
  gemm.add_input("f");
  gemm.add_input("w");
  gemm.add_output("y");
  auto& transb = *gemm.add_attribute();
  transb.set_name("transB");
  transb.set_type(onnx::AttributeProto::INT);
  transb.set_i(1);
  auto& w = *g.add_initializer();
  w.set_name("w");
  w.set_data_type(onnx::TensorProto::FLOAT);
  w.add_dims(2);
  w.add_dims(192);
  for (int i = 0; i < 384; ++i) w.add_float_data(0.01f * (i % 7));
  std::string bytes;
  m.SerializeToString(&bytes);
  return bytes;
}

model::OnnxModel import_string(const std::string& bytes) {
  return model::import_onnx_bytes({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()}, "bad.onnx");
}

TEST(Onnx, NamesTheNodeItCannotRepresent) {
  // The same graph with Relu reads (a sanity check of the fixture), with Sigmoid does not.
  const auto ok = import_string(graph_with("Relu"));
  EXPECT_EQ(ok.checkpoint.model_spec, "relu-fc2");
  EXPECT_EQ(ok.checkpoint.class_names, (std::vector<std::string>{"0", "1"}));
  try {
    import_string(graph_with("Sigmoid"));
    ADD_FAILURE() << "Sigmoid was accepted";
  } catch (const DataError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("bad.onnx"), std::string::npos) << what;
    EXPECT_NE(what.find("'the_node' (Sigmoid)"), std::string::npos) << what;
    EXPECT_NE(what.find("augflow reads Conv, BatchNormalization"), std::string::npos) << what;
  }
}

TEST(Onnx, ANodeWithoutOutputIsADataError) {
  // Found by fuzz_onnx: a residual block's Add without outputs was read through output(0).
  const Checkpoint ckpt = random_checkpoint("conv4k3p1-bn-relu-res4-res8s2-gap-fc3", {0, 3, 12, 12}, 3, 9);
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(model::onnx_model_bytes(ckpt)));
  for (int i = 0; i < model.graph().node_size(); ++i) {
    onnx::ModelProto broken = model;
    broken.mutable_graph()->mutable_node(i)->clear_output();
    std::string bytes;
    broken.SerializeToString(&bytes);
    SCOPED_TRACE(model.graph().node(i).op_type());
    expect_throws_with([&] { import_string(bytes); }, "has no output");
  }
}

TEST(Onnx, AnAddOfTheSameValueTwiceIsNoResidualBlock) {
  onnx::ModelProto model;
  ASSERT_TRUE(model.ParseFromString(graph_with("Add")));
  model.mutable_graph()->mutable_node(0)->add_input("x");  // Add(x, x): two reads of x, no branch
  std::string bytes;
  model.SerializeToString(&bytes);
  expect_throws_with([&] { import_string(bytes); }, "not a residual block");
}

TEST(Onnx, DamagedFilesAreDataErrorsNeverCrashes) {
  const Checkpoint ckpt = random_checkpoint("conv4k3p1-bn-relu-res4-gap-fc3", {0, 3, 12, 12}, 3, 9);
  const std::string good = model::onnx_model_bytes(ckpt);
  expect_throws_with([&] { import_string("this is not a protobuf at all, only text"); }, "bad.onnx");
  expect_throws_with([&] { import_string(""); }, "bad.onnx");
  // Every truncation and a few thousand byte flips: each either reads or is a DataError.
  std::size_t rejected = 0, total = 0;
  for (std::size_t cut = 0; cut < good.size(); cut += std::max<std::size_t>(1, good.size() / 300), ++total) {
    try {
      import_string(good.substr(0, cut));
    } catch (const DataError&) {
      ++rejected;
    }
  }
  Rng rng({4, 0, 0});
  for (int i = 0; i < 3000; ++i, ++total) {
    std::string bad = good;
    bad[rng.uniform_int(0, static_cast<std::int64_t>(bad.size()) - 1)] ^= static_cast<char>(1 + rng.uniform_int(0, 254));
    try {
      import_string(bad);
    } catch (const DataError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, total / 10) << "almost every damaged file was accepted: is anything checked?";
  EXPECT_THROW(model::import_onnx("/no/such/model.onnx"), IoError);
}

TEST(Onnx, PredictGivesTheSameProbabilitiesFromTheOnnxFile) {
  // A model with batch norm and a padded pool, exported; predict's scores from the .onnx file
  // (views from its metadata) equal the checkpoint's bit for bit.
  TempDir dir;
  write_noise_folder(dir, 3, 4);
  const std::string ckpt = write_checkpoint(dir, "m.ckpt", "conv6k3p1-bn-relu-pool3s2p1-res8s2-gap-fc3", 24, 3,
                                            "hflip | center_crop(28,24) | normalize(imagenet)");
  const std::string onnx = (dir.path() / "m.onnx").string();
  pipeline::export_model(model::load_checkpoint(ckpt), onnx);
  const auto scores_of = [&](const std::string& path) {
    pipeline::TestTimeOptions options;
    options.members = {path};
    options.views = "tencrop";
    pipeline::Predictor predictor(options);
    predictor.open(pipeline::open_unlabelled({(dir.path() / "data").string()}), {});
    std::vector<float> all;
    predictor.score(0, [&](const pipeline::ImageScores& s) { all.insert(all.end(), s.probs.begin(), s.probs.end()); });
    EXPECT_EQ(predictor.views(), "tencrop(resize=28,size=24) | normalize(preset=imagenet)");
    return all;
  };
  const auto from_ckpt = scores_of(ckpt);
  const auto from_onnx = scores_of(onnx);
  ASSERT_EQ(from_ckpt.size(), 12u * 3u);
  EXPECT_EQ(from_ckpt, from_onnx);
}

// ---------------------------------------------------------------------------------------------
// torchvision's ResNets as PyTorch exports them (when Debian's python3-torch is installed).

std::vector<float> read_floats(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> values(fs::file_size(path) / sizeof(float));
  in.read(reinterpret_cast<char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
  return values;
}

bool have_torchvision() {
  return std::system("/usr/bin/python3 -c 'import torch, torchvision' >/dev/null 2>&1") == 0;
}

/// torchvision's resnet18/34 in augflow's spec language: the stem, the padded max pool, four
/// stages of basic blocks (the first of stages 2-4 with stride 2 and a projection), global
/// average pool and the head; with batch norm folded, blocks without it (b0).
std::string torchvision_resnet_spec(const std::vector<int>& blocks, bool folded, int classes) {
  std::string spec = folded ? "conv64k7s2p3-relu-pool3s2p1" : "conv64k7s2p3-bn-relu-pool3s2p1";
  for (std::size_t stage = 0; stage < blocks.size(); ++stage)
    for (int b = 0; b < blocks[stage]; ++b)
      spec += "-res" + std::to_string(64 << stage) + (stage > 0 && b == 0 ? "s2" : "") + (folded ? "b0" : "");
  return spec + "-gap-fc" + std::to_string(classes);
}

class TorchvisionResNet : public ::testing::TestWithParam<std::pair<const char*, std::vector<int>>> {};

TEST_P(TorchvisionResNet, ReadsWithPyTorchsOutputs) {
  if (!have_torchvision()) GTEST_SKIP() << "python3-torch and python3-torchvision are not installed";
  const auto& [arch, blocks] = GetParam();
  TempDir dir;
  const fs::path script = fs::path(__FILE__).parent_path() / "torchvision_fixture.py";
  const int classes = 5, size = 64;
  // Two images for predict, at the input size (so that no resampling differs between the two).
  std::string images;
  for (int i = 0; i < 2; ++i)
    images += " " + dir.write("images/img" + std::to_string(i) + ".png", encode(i == 0 ? smooth_image(size, size) : noise_image(size, size, 3, 5), ".png")).string();
  const std::string command = "/usr/bin/python3 " + script.string() + " " + dir.path().string() + " " + arch + " " +
                              std::to_string(classes) + " " + std::to_string(size) + images + " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const auto input = read_floats(dir.path() / "input.bin");
  const auto expected = read_floats(dir.path() / "logits.bin");
  Tensor x({3, 3, size, size});
  ASSERT_EQ(input.size(), x.size());
  std::copy(input.begin(), input.end(), x.data());
  double scale = 1;
  for (float v : expected) scale = std::max(scale, std::abs(double(v)));
  for (const bool folded : {false, true}) {
    SCOPED_TRACE(folded ? "batch norm folded" : "batch norm kept");
    const Checkpoint ckpt = pipeline::load_model((dir.path() / (folded ? "folded.onnx" : "kept.onnx")).string());
    EXPECT_EQ(ckpt.model_spec, torchvision_resnet_spec(blocks, folded, classes));
    EXPECT_EQ(ckpt.input, (Shape{0, 3, size, size}));
    EXPECT_EQ(ckpt.augmentation, pipeline::imagenet_augmentation(size));
    EXPECT_LE(max_abs_difference(augflow_logits(ckpt, x), expected), 1e-4 * scale) << "logits up to " << scale;
  }
  // predict on the ONNX file: the decoder, the ImageNet normalisation of files without augflow's
  // metadata and the network give PyTorch's probabilities for the same PNG files.
  pipeline::TestTimeOptions options;
  options.members = {(dir.path() / "kept.onnx").string()};
  options.views = "center(resize=" + std::to_string(size) + ",size=" + std::to_string(size) + ")";
  pipeline::Predictor predictor(options);
  predictor.open(pipeline::open_unlabelled({(dir.path() / "images").string()}), {});
  std::vector<float> probs;
  predictor.score(0, [&](const pipeline::ImageScores& s) { probs.insert(probs.end(), s.probs.begin(), s.probs.end()); });
  EXPECT_EQ(predictor.views(), options.views + " | normalize(preset=imagenet)");
  EXPECT_LE(max_abs_difference(probs, read_floats(dir.path() / "probs.bin")), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(Onnx, TorchvisionResNet,
                         ::testing::Values(std::make_pair("resnet18", std::vector<int>{2, 2, 2, 2}),
                                           std::make_pair("resnet34", std::vector<int>{3, 4, 6, 3})),
                         [](const auto& info) { return std::string(info.param.first); });

// ---------------------------------------------------------------------------------------------
// The guide's OpenCV snippet (docs/export.md): the same text as examples/onnx_opencv.cpp, and it labels an image
// as augflow does.

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(Onnx, TheReadmeSnippetIsTheExampleThatRuns) {
  const fs::path root = fs::path(__FILE__).parent_path().parent_path();
  const std::string example = read_file(root / "examples" / "onnx_opencv.cpp");
  ASSERT_FALSE(example.empty());
  EXPECT_NE(read_file(root / "docs" / "export.md").find(example), std::string::npos)
      << "docs/export.md must show examples/onnx_opencv.cpp verbatim";

  TempDir dir;
  const Checkpoint ckpt = random_checkpoint("cnn-small", {0, 1, 28, 28}, 10, 31);
  const std::string model_path = (dir.path() / "model.onnx").string();
  pipeline::export_model(ckpt, model_path);
  int agreed = 0;
  for (int i = 0; i < 4; ++i) {
    const cv::Mat image = noise_image(28, 28, 1, 40 + i);
    const auto png = dir.write("img" + std::to_string(i) + ".png", encode(image, ".png"));
    // augflow's answer: pixel / 255 (normalize none), the test-time network.
    Tensor x({1, 1, 28, 28});
    for (int p = 0; p < 28 * 28; ++p) x[p] = image.data[p] / 255.0f;
    const auto logits = augflow_logits(ckpt, x);
    const int expected = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const std::string command = std::string(AUGFLOW_EXAMPLE_ONNX_OPENCV) + " " + model_path + " " + png.string() +
                                " 28 1 0 1 2>&1";
    FILE* pipe = ::popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    char line[256] = {};
    const bool got = std::fgets(line, sizeof line, pipe) != nullptr;
    EXPECT_EQ(::pclose(pipe), 0) << line;
    ASSERT_TRUE(got);
    int label = -1;
    ASSERT_EQ(std::sscanf(line, "class %d", &label), 1) << line;
    agreed += label == expected;
    EXPECT_EQ(label, expected) << line;
  }
  EXPECT_EQ(agreed, 4);
}

}  // namespace
}  // namespace augflow::test
