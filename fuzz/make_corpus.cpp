// Writes the fuzzers' seed corpora: valid inputs made by augflow itself (no third-party
// files), one folder per harness. Usage: augflow_fuzz_corpus OUTDIR
//   OUTDIR/aug_spec     augmentation and view specs (text and JSON)
//   OUTDIR/model_spec   model specs (compact, presets, JSON)
//   OUTDIR/idx          split byte + IDX images + IDX labels, plain and gzipped
//   OUTDIR/checkpoint   a small valid checkpoint (conv, batch norm, fc)
//   OUTDIR/onnx         small ONNX files as augflow writes them (conv, batch norm, pools, a
//                       residual block with and without batch norm, dropout, DropConnect, fc)
//   OUTDIR/decode       small JPEG (colour, grey, with an EXIF orientation), PNG (8/16-bit,
//                       grey, RGBA), BMP, PPM, PGM, TIFF, WebP, a GIF header
// Deterministic: the same files on every run.
#include <zlib.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include "common/rng.hpp"
#include "model/checkpoint.hpp"
#include "model/config.hpp"
#include "model/net.hpp"
#include "model/onnx.hpp"

namespace fs = std::filesystem;
using Bytes = std::vector<std::uint8_t>;

namespace {

void write(const fs::path& file, const Bytes& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + file.string());
}
void write(const fs::path& file, const std::string& text) { write(file, Bytes(text.begin(), text.end())); }

Bytes gzip(const Bytes& in) {
  z_stream s{};
  if (deflateInit2(&s, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) throw std::runtime_error("deflateInit2");
  Bytes out(deflateBound(&s, in.size()) + 32);
  s.next_in = const_cast<Bytef*>(in.data());
  s.avail_in = static_cast<uInt>(in.size());
  s.next_out = out.data();
  s.avail_out = static_cast<uInt>(out.size());
  if (deflate(&s, Z_FINISH) != Z_STREAM_END) throw std::runtime_error("deflate");
  out.resize(s.total_out);
  deflateEnd(&s);
  return out;
}

void put_be32(Bytes& out, std::uint32_t x) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<std::uint8_t>(x >> (8 * i)));
}

Bytes idx_images(std::uint32_t count, std::uint32_t rows, std::uint32_t cols) {
  Bytes out{0, 0, 8, 3};
  put_be32(out, count);
  put_be32(out, rows);
  put_be32(out, cols);
  for (std::uint32_t i = 0; i < count * rows * cols; ++i) out.push_back(static_cast<std::uint8_t>(i * 37 + 1));
  return out;
}
Bytes idx_labels(std::uint32_t count) {
  Bytes out{0, 0, 8, 1};
  put_be32(out, count);
  for (std::uint32_t i = 0; i < count; ++i) out.push_back(static_cast<std::uint8_t>(i % 10));
  return out;
}
/// The idx harness's input: a byte that puts the split after `images`, then both files.
Bytes idx_input(const Bytes& images, const Bytes& labels) {
  const std::size_t rest = images.size() + labels.size();
  int split = 0;
  while (split < 255 && rest * split / 255 < images.size()) ++split;
  if (rest * split / 255 != images.size()) throw std::runtime_error("idx seed: no split byte fits");
  Bytes out{static_cast<std::uint8_t>(split)};
  out.insert(out.end(), images.begin(), images.end());
  out.insert(out.end(), labels.begin(), labels.end());
  return out;
}

cv::Mat noise(int w, int h, int type, std::uint64_t seed) {
  cv::Mat m(h, w, type);
  const std::size_t n = m.total() * m.elemSize();
  for (std::size_t i = 0; i < n; ++i) m.data[i] = static_cast<std::uint8_t>(augflow::mix64(seed * 1000003 + i) >> 56);
  return m;
}

Bytes encode(const cv::Mat& image, const std::string& ext, std::vector<int> params = {}) {
  Bytes out;
  if (!cv::imencode(ext, image, out, params)) throw std::runtime_error("cv::imencode " + ext);
  return out;
}

/// A JPEG with an APP1 EXIF segment holding one tag, Orientation = `orientation`.
Bytes with_exif_orientation(const Bytes& jpeg, std::uint16_t orientation) {
  const Bytes tiff{'M', 'M', 0, 42, 0, 0, 0, 8,                 // big-endian TIFF, IFD at 8
                   0, 1,                                          // one entry
                   0x01, 0x12, 0, 3, 0, 0, 0, 1,                  // Orientation, SHORT, count 1
                   static_cast<std::uint8_t>(orientation >> 8), static_cast<std::uint8_t>(orientation), 0, 0,
                   0, 0, 0, 0};                                   // no next IFD
  Bytes app1{'E', 'x', 'i', 'f', 0, 0};
  app1.insert(app1.end(), tiff.begin(), tiff.end());
  const std::size_t len = app1.size() + 2;
  Bytes out{0xFF, 0xD8, 0xFF, 0xE1, static_cast<std::uint8_t>(len >> 8), static_cast<std::uint8_t>(len)};
  out.insert(out.end(), app1.begin(), app1.end());
  out.insert(out.end(), jpeg.begin() + 2, jpeg.end());  // skip the original SOI
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: augflow_fuzz_corpus OUTDIR\n";
    return 2;
  }
  const fs::path out = argv[1];
  try {
    // Augmentation and view specs.
    const std::vector<std::string> aug_specs{
        "hflip | scale_crop(256,480,224) | jitter(brightness=0.4,contrast=0.4) | affine(rotate=10,shear=5) | normalize(imagenet)",
        "resized_crop(size=224,area=0.08:1,ratio=0.75:1.333) | hflip | jitter(0.4,0.4,0.4,0.1) | normalize(imagenet)",
        "pad_crop(pad=4,size=32,border=reflect) | vflip(p=0.25) | erase(p=0.5,area=0.02:0.33,ratio=0.3:3.3,value=random)",
        "lighting(std=0.1) | affine(translate=0.1,rotate=-5:15,scale=0.9:1.1,stretch=0.95:1.05,shear=5,interpolation=nearest,border=wrap) | normalize(mean=[0.5,0.5,0.5],std=[0.25,0.25,0.25])",
        "pad_crop(2,28) | hflip | normalize(none)",
        "{\"version\": 1, \"steps\": [{\"name\": \"hflip\", \"p\": 0.5}, {\"name\": \"scale_crop\", \"min\": 256, \"max\": 480, \"size\": 224}, {\"name\": \"normalize\", \"preset\": \"imagenet\"}]}",
        "center", "tencrop(resize=256,size=224)", "multiscale([224,256,384],224) | normalize(imagenet)",
        "center(resize=32,size=28)"};
    for (std::size_t i = 0; i < aug_specs.size(); ++i) write(out / "aug_spec" / ("spec" + std::to_string(i)), aug_specs[i]);

    // Model specs.
    const std::vector<std::string> model_specs{
        "conv32k3p1-bn-relu-pool2-conv64k3p1-bn-relu-pool2-fc128-relu-drop0.5-fc10",
        "conv16k3p1-bn-relu-res16-res32s2-res64s2-gap-fc10-sd0.8",
        "fc50-relu-fc10", "twolayer", "mlp", "cnn-small", "resnet-mini",
        "conv8k5s2p2-lrelu0.1-avgpool2-flatten-dc0.3-fc10-tanh",
        "{\"version\": 1, \"layers\": [{\"kind\": \"conv\", \"out\": 8, \"k\": 3, \"s\": 1, \"p\": 1}, {\"kind\": \"relu\"}, {\"kind\": \"gap\"}, {\"kind\": \"fc\", \"out\": 10}]}"};
    for (std::size_t i = 0; i < model_specs.size(); ++i)
      write(out / "model_spec" / ("spec" + std::to_string(i)), model_specs[i]);

    // IDX: 3 images of 4x3 with 3 labels, plain and gzipped, and a 2x2 one.
    write(out / "idx" / "plain", idx_input(idx_images(3, 4, 3), idx_labels(3)));
    write(out / "idx" / "gzip", idx_input(gzip(idx_images(3, 4, 3)), gzip(idx_labels(3))));
    write(out / "idx" / "mixed", idx_input(gzip(idx_images(5, 2, 2)), idx_labels(5)));

    // A checkpoint of a small conv/bn/fc model.
    {
      using namespace augflow::model;
      const ModelSpec spec = parse_model_spec("conv2k3p1-bn-relu-pool2-fc3", 3);
      Net net(spec, Shape{0, 1, 4, 4}, 3);
      net.initialize(7);
      Checkpoint c;
      c.class_names = {"ant", "bee", "wasp"};
      c.epoch = 2;
      c.step = 12;
      c.seed = 42;
      c.augmentation = "pad_crop(1,4) | hflip";
      c.optimizer = "adam";
      c.meta = {{"val_accuracy", 0.5}};
      store_net(net, c);
      Tensor m(Shape{1, 3, 1, 1});
      c.optimizer_state.emplace("4.bias.m", m);
      fs::create_directories(out / "checkpoint");
      save_checkpoint((out / "checkpoint" / "small.ckpt").string(), c);
    }

    // ONNX files: small models covering every kind of node the reader takes.
    {
      using namespace augflow::model;
      const char* specs[] = {"conv2k3p1-bn-relu-pool3s2p1-fc3", "conv2k3p1-res2-res4s2b0-gap-fc3-sd0.5",
                             "fc4-bn-lrelu0.1-drop0.2-dc0.3-fc3", "conv2k3s2p1-tanh-avgpool2-flatten-fc3"};
      for (std::size_t i = 0; i < std::size(specs); ++i) {
        Net net(parse_model_spec(specs[i], 3), Shape{0, 2, 6, 6}, 3);
        net.initialize(i);
        Checkpoint c;
        store_net(net, c);
        c.classes = 3;
        c.class_names = {"ant", "bee", "wasp"};
        write(out / "onnx" / ("model" + std::to_string(i) + ".onnx"), onnx_model_bytes(c, {{"note", "seed"}}));
      }
    }

    // Images.
    const fs::path dec = out / "decode";
    const cv::Mat colour = noise(16, 12, CV_8UC3, 1);
    const cv::Mat grey = noise(9, 7, CV_8UC1, 2);
    const Bytes jpeg = encode(colour, ".jpg", {cv::IMWRITE_JPEG_QUALITY, 90});
    write(dec / "colour.jpg", jpeg);
    write(dec / "grey.jpg", encode(grey, ".jpg"));
    write(dec / "progressive.jpg", encode(colour, ".jpg", {cv::IMWRITE_JPEG_PROGRESSIVE, 1}));
    write(dec / "exif6.jpg", with_exif_orientation(jpeg, 6));
    write(dec / "colour.png", encode(colour, ".png"));
    write(dec / "grey.png", encode(grey, ".png"));
    cv::Mat rgba = noise(5, 6, CV_8UC4, 3);
    write(dec / "rgba.png", encode(rgba, ".png"));
    cv::Mat deep(4, 5, CV_16UC3);
    for (std::size_t i = 0; i < deep.total() * 3; ++i) deep.ptr<std::uint16_t>()[i] = static_cast<std::uint16_t>(i * 4099);
    write(dec / "deep.png", encode(deep, ".png"));
    write(dec / "colour.bmp", encode(noise(6, 5, CV_8UC3, 4), ".bmp"));
    write(dec / "colour.ppm", encode(noise(6, 5, CV_8UC3, 5), ".ppm"));
    write(dec / "grey.pgm", encode(grey, ".pgm"));
    write(dec / "colour.tiff", encode(noise(6, 5, CV_8UC3, 6), ".tiff"));
    write(dec / "colour.webp", encode(colour, ".webp", {cv::IMWRITE_WEBP_QUALITY, 80}));
    write(dec / "header.gif", Bytes{'G', 'I', 'F', '8', '9', 'a', 4, 0, 3, 0, 0, 0, 0, ';'});
  } catch (const std::exception& e) {
    std::cerr << "augflow_fuzz_corpus: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
