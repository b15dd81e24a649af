#include "augment/transform.hpp"

#include <sstream>

#include <nlohmann/json.hpp>

#include "common/error.hpp"

namespace augflow::augment {
namespace {

std::string rect_text(const cv::Rect& r) {
  std::ostringstream out;
  out << "[" << r.x << "," << r.y << " " << r.width << "x" << r.height << "]";
  return out.str();
}

std::string fixed(double x, int digits = 3) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(digits);
  out << x;
  return out.str();
}

struct TextVisitor {
  std::string operator()(const NoParams&) const { return "-"; }
  std::string operator()(const FlipParams& p) const { return p.flip ? "flip=1" : "flip=0"; }
  std::string operator()(const CropParams& p) const {
    std::string text = p.scale_length ? "L=" + std::to_string(p.scale_length) + " " : "";
    return text + "src=" + rect_text(p.source) + " out=" + std::to_string(p.out.width) + "x" +
           std::to_string(p.out.height);
  }
  std::string operator()(const JitterParams& p) const {
    static const char* names = "bcsh";
    std::string order;
    for (auto o : p.order) order += names[o];
    return "b=" + fixed(p.brightness) + " c=" + fixed(p.contrast) + " s=" + fixed(p.saturation) +
           " h=" + fixed(p.hue) + " order=" + order;
  }
  std::string operator()(const LightingParams& p) const {
    return "alpha=" + fixed(p.alpha[0]) + "," + fixed(p.alpha[1]) + "," + fixed(p.alpha[2]);
  }
  std::string operator()(const AffineParams& p) const {
    return "t=" + fixed(p.translate_x, 1) + "," + fixed(p.translate_y, 1) + " r=" + fixed(p.rotate, 1) +
           " s=" + fixed(p.scale_x) + "," + fixed(p.scale_y) + " sh=" + fixed(p.shear, 1);
  }
  std::string operator()(const EraseParams& p) const {
    return p.erase ? "rect=" + rect_text(p.rect) : "erase=0";
  }
};

nlohmann::json rect_json(const cv::Rect& r) { return {r.x, r.y, r.width, r.height}; }

struct JsonVisitor {
  nlohmann::json operator()(const NoParams&) const { return nlohmann::json::object(); }
  nlohmann::json operator()(const FlipParams& p) const { return {{"flip", p.flip}}; }
  nlohmann::json operator()(const CropParams& p) const {
    return {{"source", rect_json(p.source)}, {"out", {p.out.width, p.out.height}}, {"scale_length", p.scale_length}};
  }
  nlohmann::json operator()(const JitterParams& p) const {
    return {{"brightness", p.brightness}, {"contrast", p.contrast}, {"saturation", p.saturation},
            {"hue", p.hue}, {"order", p.order}};
  }
  nlohmann::json operator()(const LightingParams& p) const { return {{"alpha", p.alpha}}; }
  nlohmann::json operator()(const AffineParams& p) const {
    return {{"translate", {p.translate_x, p.translate_y}}, {"rotate", p.rotate},
            {"scale", {p.scale_x, p.scale_y}}, {"shear", p.shear}};
  }
  nlohmann::json operator()(const EraseParams& p) const {
    return {{"erase", p.erase}, {"rect", rect_json(p.rect)}, {"noise_seed", p.noise_seed}};
  }
};

}  // namespace

std::string to_string(const Params& params) { return std::visit(TextVisitor{}, params); }
nlohmann::json to_json(const Params& params) { return std::visit(JsonVisitor{}, params); }

void check_image(const cv::Mat& image, std::string_view who) {
  if (image.empty()) throw ShapeError(std::string(who) + ": empty image");
  if (image.depth() != CV_8U || (image.channels() != 1 && image.channels() != 3))
    throw ShapeError(std::string(who) + ": expected an 8-bit image with 1 or 3 channels, got depth " +
                     std::to_string(image.depth()) + " with " + std::to_string(image.channels()) +
                     " channels");
}

}  // namespace augflow::augment
