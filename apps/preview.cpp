// augflow preview: a contact sheet of exactly what training (or test-time evaluation) sees.
#include <cmath>
#include <filesystem>
#include <iostream>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "apps/commands.hpp"
#include "augment/decode.hpp"
#include "augment/spec.hpp"
#include "common/error.hpp"
#include "pipeline/image_files.hpp"

namespace augflow::apps {
namespace {
namespace fs = std::filesystem;

struct PreviewOptions {
  std::string source;
  std::string aug = kDefaultAugSpec;
  std::string views;
  int count = 16;
  std::uint64_t seed = 0;
  std::uint64_t epoch = 0;
  std::size_t index = 0;
  int channels = 3;
  int tile = 224;
  std::string out = "preview.png";
  std::string out_dir;
};

/// A generated 640x480 test card (colour bars, gradient, grid, an arrow pointing up-right), so
/// that preview works on a machine without any image: orientation and colour changes show.
cv::Mat test_card() {
  cv::Mat card(480, 640, CV_8UC3);
  const cv::Scalar bars[] = {{255, 255, 255}, {0, 255, 255}, {255, 255, 0}, {0, 255, 0},
                             {255, 0, 255},   {0, 0, 255},   {255, 0, 0},   {0, 0, 0}};
  for (int i = 0; i < 8; ++i) cv::rectangle(card, cv::Rect(i * 80, 0, 80, 240), bars[i], cv::FILLED);
  for (int x = 0; x < 640; ++x)
    cv::line(card, {x, 240}, {x, 479}, cv::Scalar::all(x * 255 / 639));
  for (int x = 0; x < 640; x += 40) cv::line(card, {x, 0}, {x, 479}, {128, 128, 128});
  for (int y = 0; y < 480; y += 40) cv::line(card, {0, y}, {639, y}, {128, 128, 128});
  cv::arrowedLine(card, {200, 400}, {440, 120}, {0, 0, 200}, 12, cv::LINE_AA, 0, 0.2);
  cv::putText(card, "augflow", {40, 330}, cv::FONT_HERSHEY_DUPLEX, 2.0, {20, 20, 20}, 4, cv::LINE_AA);
  return card;
}

std::vector<std::uint8_t> load_source(const PreviewOptions& o, std::string& name) {
  if (o.source == "testcard") {
    name = "testcard";
    std::vector<std::uint8_t> png;
    cv::imencode(".png", test_card(), png);
    return png;
  }
  const auto files = pipeline::list_image_files(o.source);
  if (files.empty()) throw DataError(o.source, "no image files found (extensions jpg, jpeg, png, bmp, webp, tif, tiff, ppm, pgm)");
  if (o.index >= files.size())
    throw ConfigError("--index " + std::to_string(o.index) + " is past the " + std::to_string(files.size()) +
                      " images in " + o.source);
  name = files[o.index].string();
  return augment::read_file(files[o.index]);
}

/// Fits `image` into a tile x tile box (nearest-neighbour when enlarging, so pixels stay visible).
cv::Mat fit_tile(const cv::Mat& image, int tile) {
  cv::Mat colour;
  if (image.channels() == 1) cv::cvtColor(image, colour, cv::COLOR_GRAY2BGR);
  else colour = image;
  const double scale = std::min(static_cast<double>(tile) / colour.cols, static_cast<double>(tile) / colour.rows);
  cv::Mat resized;
  cv::resize(colour, resized, cv::Size(std::max(1, static_cast<int>(colour.cols * scale)),
                                       std::max(1, static_cast<int>(colour.rows * scale))),
             0, 0, scale > 1 ? cv::INTER_NEAREST : cv::INTER_AREA);
  cv::Mat box(tile, tile, CV_8UC3, cv::Scalar(40, 40, 40));
  resized.copyTo(box(cv::Rect((tile - resized.cols) / 2, (tile - resized.rows) / 2, resized.cols, resized.rows)));
  return box;
}

/// Splits caption lines so each fits the tile width at the caption font.
std::vector<std::string> wrap(const std::vector<std::string>& lines, int width) {
  std::vector<std::string> out;
  for (const auto& line : lines) {
    std::string rest = line;
    while (!rest.empty()) {
      std::size_t n = rest.size();
      int baseline = 0;
      while (n > 1 && cv::getTextSize(rest.substr(0, n), cv::FONT_HERSHEY_SIMPLEX, 0.35, 1, &baseline).width > width - 4)
        --n;
      // Prefer breaking at a space so numbers stay whole.
      if (n < rest.size()) {
        const auto space = rest.rfind(' ', n);
        if (space != std::string::npos && space > 0) n = space + 1;
      }
      out.push_back(rest.substr(0, n));
      rest.erase(0, n);
    }
  }
  return out;
}

struct Tile {
  cv::Mat image;
  std::vector<std::string> caption;
};

cv::Mat contact_sheet(const std::vector<Tile>& tiles, int tile) {
  std::vector<std::vector<std::string>> captions;
  std::size_t max_lines = 0;
  for (const auto& t : tiles) {
    captions.push_back(wrap(t.caption, tile));
    max_lines = std::max(max_lines, captions.back().size());
  }
  const int line_height = 12;
  const int cell_h = tile + static_cast<int>(max_lines) * line_height + 6;
  const int cols = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(tiles.size()))));
  const int rows = static_cast<int>((tiles.size() + cols - 1) / cols);
  const int gap = 4;
  cv::Mat sheet((cell_h + gap) * rows + gap, (tile + gap) * cols + gap, CV_8UC3, cv::Scalar(255, 255, 255));
  for (std::size_t i = 0; i < tiles.size(); ++i) {
    const int x = gap + static_cast<int>(i % cols) * (tile + gap);
    const int y = gap + static_cast<int>(i / cols) * (cell_h + gap);
    fit_tile(tiles[i].image, tile).copyTo(sheet(cv::Rect(x, y, tile, tile)));
    for (std::size_t l = 0; l < captions[i].size(); ++l)
      cv::putText(sheet, captions[i][l], {x + 2, y + tile + 11 + static_cast<int>(l) * line_height},
                  cv::FONT_HERSHEY_SIMPLEX, 0.35, {0, 0, 0}, 1, cv::LINE_AA);
  }
  return sheet;
}

void write_image(const fs::path& path, const cv::Mat& image) {
  bool ok = false;
  try {
    ok = cv::imwrite(path.string(), image);
  } catch (const cv::Exception& e) {
    throw IoError(path.string() + ": cannot write image: " + e.what());
  }
  if (!ok) throw IoError(path.string() + ": cannot write image (does the folder exist? is the extension .png or .jpg?)");
}

void run_preview(const PreviewOptions& o) {
  single_threaded_opencv();
  if (o.count < 1 || o.count > 1024) throw ConfigError("--n must be in [1, 1024], got " + std::to_string(o.count));
  if (o.tile < 32 || o.tile > 1024) throw ConfigError("--tile must be in [32, 1024], got " + std::to_string(o.tile));
  if (o.channels != 1 && o.channels != 3) throw ConfigError("--channels must be 1 or 3");
  std::string name;
  const auto bytes = load_source(o, name);
  augment::DecodedImage original;
  try {
    original = augment::decode_image(bytes, {o.channels});
  } catch (const DataError& e) {
    throw DataError(name, e.reason());
  }
  std::vector<Tile> tiles;
  tiles.push_back({original.image, {"original " + std::to_string(original.image.cols) + "x" +
                                    std::to_string(original.image.rows)}});
  std::vector<cv::Mat> outputs;
  if (!o.views.empty()) {
    const auto views = augment::parse_views(o.views);
    std::cout << "views: " << views.print() << "\n";
    const auto plans = views.views.plan({original.image.cols, original.image.rows, o.channels});
    const auto images = views.views.apply(original.image);
    for (std::size_t i = 0; i < images.size(); ++i) {
      const auto& r = plans[i].crop.source;
      std::string line = "view " + std::to_string(i) + ": L=" + std::to_string(plans[i].scale) + " src=[" +
                         std::to_string(r.x) + "," + std::to_string(r.y) + " " + std::to_string(r.width) + "x" +
                         std::to_string(r.height) + "]" + (plans[i].flip ? " flipped" : "");
      std::cout << line << "\n";
      tiles.push_back({images[i], {line}});
      outputs.push_back(images[i]);
    }
  } else {
    const auto pipeline = augment::parse_pipeline_any(o.aug);
    std::cout << "spec: " << pipeline.print() << "\n";
    for (int i = 0; i < o.count; ++i) {
      // The same key training uses for this image: (seed, epoch, sample index i).
      const augflow::SampleKey key{o.seed, o.epoch, static_cast<std::uint64_t>(i)};
      const auto sample = pipeline.run(bytes, key, o.channels);
      auto lines = sample.plan.describe(pipeline);
      std::cout << "sample " << i << ":";
      for (const auto& l : lines) std::cout << "  " << l;
      std::cout << "\n";
      lines.insert(lines.begin(), "#" + std::to_string(i) + " " + std::to_string(sample.image.cols) + "x" +
                                      std::to_string(sample.image.rows));
      tiles.push_back({sample.image, lines});
      outputs.push_back(sample.image);
    }
    std::cout << "(tiles show the 8-bit images before normalize)\n";
  }
  write_image(o.out, contact_sheet(tiles, o.tile));
  std::cout << "wrote " << o.out << " (" << tiles.size() << " tiles, source " << name << ")\n";
  if (!o.out_dir.empty()) {
    std::error_code ec;
    fs::create_directories(o.out_dir, ec);
    if (ec) throw IoError(o.out_dir + ": cannot create folder: " + ec.message());
    for (std::size_t i = 0; i < outputs.size(); ++i) {
      char file[32];
      std::snprintf(file, sizeof file, "sample_%03zu.png", i);
      write_image(fs::path(o.out_dir) / file, outputs[i]);
    }
    std::cout << "wrote " << outputs.size() << " images to " << o.out_dir << "\n";
  }
}

}  // namespace

void add_preview_command(CLI::App& app) {
  auto options = std::make_shared<PreviewOptions>();
  auto* cmd = app.add_subcommand(
      "preview",
      "Write a contact sheet of what training sees: the original image first, then N augmented\n"
      "samples, each captioned with its sampled parameters (the same samples training draws for\n"
      "image index 0..N-1 at --seed/--epoch). With --views, the test-time views instead.");
  cmd->add_option("source", options->source,
                  "an image file, a folder (its --index-th image in sorted order), or 'testcard' for a generated image")
      ->required();
  cmd->add_option("--aug", options->aug, "augmentation spec (text or JSON; see below)")->capture_default_str();
  cmd->add_option("--views", options->views,
                  "show test-time views instead: center, tencrop, multiscale, or a view spec such as "
                  "'tencrop(256,224)' or 'multiscale([224,256,384],224)'");
  cmd->add_option("--n", options->count, "number of augmented samples")->capture_default_str();
  cmd->add_option("--seed", options->seed, "run seed (samples are a pure function of seed, epoch, index)")->capture_default_str();
  cmd->add_option("--epoch", options->epoch, "epoch whose samples to show")->capture_default_str();
  cmd->add_option("--index", options->index, "which image of a folder (sorted by path)")->capture_default_str();
  cmd->add_option("--channels", options->channels, "decode to 1 (grey) or 3 (colour) channels")->capture_default_str();
  cmd->add_option("--tile", options->tile, "tile size in the sheet, pixels")->capture_default_str();
  cmd->add_option("--out", options->out, "contact sheet to write (.png or .jpg)")->capture_default_str();
  cmd->add_option("--out-dir", options->out_dir, "also write each sample as DIR/sample_NNN.png");
  cmd->footer(aug_spec_help());
  cmd->callback([options] { run_preview(*options); });
}

}  // namespace augflow::apps
