// The objects data set: scene sampling and rendering (see objects.hpp for the contract).
//
// Rendering works in float BGR: the background texture first, then the distractors behind the
// object, the object, the distractors in front, lighting, blur and noise; one conversion to
// 8 bits at the end. Shapes are drawn as anti-aliased 8-bit coverage masks (OpenCV's LINE_AA
// with 8 fractional bits of position), and every layer is blended through its mask, so edges
// are soft at any size.
#include "data/objects.hpp"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <string>

#include <opencv2/imgproc.hpp>

namespace augflow::data {
namespace {

constexpr double kPi = std::numbers::pi;

// The difficulty knobs, in one place. Ranges are uniform unless said otherwise.
// Objects in photos are mostly upright: a full turn made a small CNN learn rotation invariance
// from scratch, and cnn-small stayed at chance for minutes (20,000 images, 32 px).
constexpr double kRotationMaxDeg = 35;                      // rotation in [-max, max] degrees
constexpr double kScaleMin = 0.4, kScaleMax = 0.9;          // circumradius / half short side
constexpr double kAspectMax = 1.25;                         // stretch in [1/max, max], log-uniform
// Photos frame their subject: the centre moves by at most this fraction of the frame. (Anywhere
// in the frame, small objects left cnn-small, whose fc layer sees every position apart, near
// chance for minutes.)
constexpr double kCentreJitter = 0.15;
constexpr double kObjectContrastMin = 100;                  // object vs background mean, RGB distance
// ... and in luma: JPEG keeps chroma at half resolution (4:2:0), which at 32 px blurs an edge
// that is colour only into a smudge (cnn-small learnt half as fast from such JPEGs as from PNGs).
constexpr double kObjectLumaContrastMin = 40;
constexpr double kShadeMax = 60;                            // object shade: colour +- this per channel
constexpr double kTextureDeltaMax = 45;                     // second background colour: first +- this
constexpr int kDistractorsMin = 2, kDistractorsMax = 5;
constexpr double kBlobProbability = 0.5, kInFrontProbability = 0.3;
// Clutter that looks like the classes: a share of the distractors are small shapes of any class
// (photos hold more than their subject), so a model must tell the subject from the clutter.
constexpr double kDecoyProbability = 0.35, kDecoyScaleMin = 0.15, kDecoyScaleMax = 0.3;  // as kScale*
constexpr double kStrokeWidthMin = 2, kStrokeWidthMax = 4;  // % of the short side
// Each of a stroke's two segments, fraction of the frame. Strokes across the whole frame drew
// more edges than the object and kept cnn-small near chance (20 % after 5 epochs of 20,000).
constexpr double kStrokeLengthMin = 0.1, kStrokeLengthMax = 0.3;
constexpr double kBlobRadiusMin = 0.04, kBlobRadiusMax = 0.1;
constexpr double kContrastMin = 0.7, kContrastMax = 1.25, kBrightnessMax = 40;
constexpr double kBlurProbability = 0.3, kBlurSigmaMin = 0.4, kBlurSigmaMax = 1.1;
constexpr double kNoiseSigmaMin = 3, kNoiseSigmaMax = 9;

// Zero mean, unit variance, bell-shaped: the sum of four 16-bit uniforms from one draw
// (Irwin-Hall). Pixel noise needs no exact Gaussian tails, and Rng::normal's log and cos were
// half of the rendering time.
double bell_noise(Rng& rng) {
  const std::uint64_t bits = rng.next_u64();
  const double sum = static_cast<double>((bits & 0xFFFF) + ((bits >> 16) & 0xFFFF) + ((bits >> 32) & 0xFFFF) + (bits >> 48));
  return (sum / 65536.0 - 2.0) * std::sqrt(3.0);  // each uniform has variance 1/12
}

cv::Scalar random_colour(Rng& rng) { return {rng.uniform(0, 256), rng.uniform(0, 256), rng.uniform(0, 256)}; }

cv::Scalar clamp_colour(cv::Scalar c) {
  for (int i = 0; i < 3; ++i) c[i] = std::clamp(c[i], 0.0, 255.0);
  return c;
}

cv::Scalar jitter_colour(Rng& rng, const cv::Scalar& c, double delta) {
  return clamp_colour({c[0] + rng.uniform(-delta, delta), c[1] + rng.uniform(-delta, delta),
                       c[2] + rng.uniform(-delta, delta)});
}

/// Rec. 601 luma of a BGR colour (what JPEG keeps at full resolution).
double luma(const cv::Scalar& bgr) { return 0.114 * bgr[0] + 0.587 * bgr[1] + 0.299 * bgr[2]; }

double distance(const cv::Scalar& a, const cv::Scalar& b) {
  return std::sqrt((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1]) + (a[2] - b[2]) * (a[2] - b[2]));
}

std::vector<cv::Point2d> regular_polygon(int n, double radius, double start_rad, cv::Point2d offset = {}) {
  std::vector<cv::Point2d> points;
  for (int i = 0; i < n; ++i) {
    const double a = start_rad + 2 * kPi * i / n;
    points.emplace_back(offset.x + radius * std::cos(a), offset.y + radius * std::sin(a));
  }
  return points;
}

std::vector<cv::Point2d> heart() {
  // The classic parametric heart (x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t),
  // y flipped to point down, centred on its bounding box and scaled to circumradius 1.
  std::vector<cv::Point2d> points;
  for (int i = 0; i < 64; ++i) {
    const double t = 2 * kPi * i / 64;
    points.emplace_back(16 * std::pow(std::sin(t), 3),
                        -(13 * std::cos(t) - 5 * std::cos(2 * t) - 2 * std::cos(3 * t) - std::cos(4 * t)));
  }
  double top = 1e9, bottom = -1e9;
  for (const auto& p : points) top = std::min(top, p.y), bottom = std::max(bottom, p.y);
  const double mid = (top + bottom) / 2;
  double radius = 0;
  for (auto& p : points) {
    p.y -= mid;
    radius = std::max(radius, std::hypot(p.x, p.y));
  }
  for (auto& p : points) p *= 1 / radius;
  return points;
}

// A coverage mask (0..1, float) of `polygons` mapped to pixels by `to_pixel`: the first is
// filled, the others are cut out of it.
template <class ToPixel>
cv::Mat polygon_mask(const std::vector<std::vector<cv::Point2d>>& polygons, cv::Size size, ToPixel to_pixel) {
  constexpr int kShift = 8;  // fractional bits of the vertices
  cv::Mat mask = cv::Mat::zeros(size, CV_8U);
  for (std::size_t k = 0; k < polygons.size(); ++k) {
    std::vector<cv::Point> pts;
    for (const auto& p : polygons[k]) {
      const cv::Point2d q = to_pixel(p);
      pts.emplace_back(cv::saturate_cast<int>(q.x * (1 << kShift)), cv::saturate_cast<int>(q.y * (1 << kShift)));
    }
    cv::fillPoly(mask, std::vector<std::vector<cv::Point>>{pts}, cv::Scalar(k == 0 ? 255 : 0), cv::LINE_AA, kShift);
  }
  cv::Mat coverage;
  mask.convertTo(coverage, CV_32F, 1.0 / 255);
  return coverage;
}

// image = image * (1 - mask) + paint * mask, paint a BGR float image or colour.
void blend(cv::Mat& image, const cv::Mat& mask, const cv::Mat& paint) {
  for (int y = 0; y < image.rows; ++y) {
    auto* out = image.ptr<cv::Vec3f>(y);
    const auto* m = mask.ptr<float>(y);
    const auto* p = paint.ptr<cv::Vec3f>(y);
    for (int x = 0; x < image.cols; ++x) out[x] += (p[x] - out[x]) * m[x];
  }
}

void blend(cv::Mat& image, const cv::Mat& mask, const cv::Scalar& colour) {
  blend(image, mask, cv::Mat(image.size(), CV_32FC3, colour));
}

// A two-colour texture: t(x, y) in [0, 1] blends colours a and b.
cv::Mat background(const ObjectsScene& s, cv::Size size) {
  const double short_side = std::min(size.width, size.height);
  cv::Mat t(size, CV_32F);
  if (s.background == BackgroundKind::smooth_noise) {
    // Random values on a coarse grid, cubic-interpolated up: blotches of about frame/frequency.
    const int cells = std::max(2, static_cast<int>(std::lround(s.frequency)));
    cv::Mat grid(cells, cells, CV_32F);
    Rng rng({s.texture_key, 0, 0});
    for (int i = 0; i < cells * cells; ++i) grid.at<float>(i / cells, i % cells) = static_cast<float>(rng.uniform());
    cv::resize(grid, t, size, 0, 0, cv::INTER_CUBIC);
    cv::min(cv::max(t, 0.0), 1.0, t);
  } else {
    const double cx = std::cos(s.orientation_rad), sy = std::sin(s.orientation_rad);
    for (int y = 0; y < size.height; ++y)
      for (int x = 0; x < size.width; ++x) {
        const double u = ((x + 0.5) * cx + (y + 0.5) * sy) / short_side;  // along the orientation, in frames
        const double v = s.background == BackgroundKind::stripes
                             ? 0.5 + 0.5 * std::sin(2 * kPi * s.frequency * u + s.phase)
                             : std::clamp(0.5 + (u - 0.5 * (cx + sy)) * (0.5 + 0.25 * s.frequency), 0.0, 1.0);
        t.at<float>(y, x) = static_cast<float>(v);
      }
  }
  cv::Mat image(size, CV_32FC3, s.background_a);
  blend(image, t, s.background_b);
  return image;
}

cv::Mat distractor_mask(const Distractor& d, cv::Size size) {
  constexpr int kShift = 8;
  const double short_side = std::min(size.width, size.height);
  auto px = [&](cv::Point2d p) {
    return cv::Point(cv::saturate_cast<int>(p.x * size.width * (1 << kShift)),
                     cv::saturate_cast<int>(p.y * size.height * (1 << kShift)));
  };
  if (d.decoy_label >= 0) {
    const double radius = d.b.x * short_side / 2, a = d.angle_deg * kPi / 180;
    const cv::Point2d centre(d.a.x * size.width - 0.5, d.a.y * size.height - 0.5);
    return polygon_mask(shape_outline(d.decoy_label), size, [&](cv::Point2d p) {
      return centre + radius * cv::Point2d(std::cos(a) * p.x - std::sin(a) * p.y, std::sin(a) * p.x + std::cos(a) * p.y);
    });
  }
  cv::Mat mask = cv::Mat::zeros(size, CV_8U);
  if (d.blob) {
    const cv::Size axes(cv::saturate_cast<int>(d.b.x * short_side * (1 << kShift)),
                        cv::saturate_cast<int>(d.b.y * short_side * (1 << kShift)));
    cv::ellipse(mask, px(d.a), axes, d.angle_deg, 0, 360, cv::Scalar(255), cv::FILLED, cv::LINE_AA, kShift);
  } else {
    const int width = std::max(1, static_cast<int>(std::lround(d.thickness / 100 * short_side)));
    const std::vector<std::vector<cv::Point>> line{{px(d.a), px(d.b), px(d.c)}};
    cv::polylines(mask, line, false, cv::Scalar(255), width, cv::LINE_AA, kShift);
  }
  cv::Mat coverage;
  mask.convertTo(coverage, CV_32F, 1.0 / 255);
  return coverage;
}

}  // namespace

std::vector<std::vector<cv::Point2d>> shape_outline(int label) {
  const double up = -kPi / 2;
  switch (label) {
    case 0: return {regular_polygon(48, 1, 0)};
    case 1: return {regular_polygon(3, 1, up)};
    case 2: return {regular_polygon(4, 1, kPi / 4)};
    case 3: {
      std::vector<cv::Point2d> star;
      for (int i = 0; i < 10; ++i) {
        const double r = i % 2 ? 0.42 : 1.0, a = up + kPi * i / 5;
        star.emplace_back(r * std::cos(a), r * std::sin(a));
      }
      return {star};
    }
    case 4: return {regular_polygon(48, 1, 0), regular_polygon(48, 0.55, 0)};
    case 5: {
      const double w = 0.3, l = 1 / std::hypot(1.0, w);  // arm half-width; arm length so the corners are at 1
      const double ww = w * l;
      return {{{ww, -l}, {ww, -ww}, {l, -ww}, {l, ww}, {ww, ww}, {ww, l},
               {-ww, l}, {-ww, ww}, {-l, ww}, {-l, -ww}, {-ww, -ww}, {-ww, -l}}};
    }
    case 6: return {regular_polygon(48, 1, 0), regular_polygon(48, 0.85, 0, {0.5, -0.1})};
    case 7: return {heart()};
    case 8: {
      const double shaft = 0.22, tail = -std::sqrt(1 - shaft * shaft);  // the tail's corners at radius 1
      return {{{tail, -shaft}, {0.15, -shaft}, {0.15, -0.62}, {1, 0}, {0.15, 0.62}, {0.15, shaft}, {tail, shaft}}};
    }
    case 9: return {regular_polygon(6, 1, 0)};
    default: throw std::invalid_argument("objects: label " + std::to_string(label) + " is outside 0..9");
  }
}

ObjectsScene sample_objects_scene(std::uint64_t seed, std::uint64_t index, int label) {
  if (label < 0 || label >= static_cast<int>(kObjectClassNames.size()))
    throw std::invalid_argument("objects: label " + std::to_string(label) + " is outside 0..9");
  Rng rng({seed, 0, index}, kSceneStream);
  ObjectsScene s;
  s.label = label;
  s.angle_rad = rng.uniform(-kRotationMaxDeg, kRotationMaxDeg) * kPi / 180;
  s.scale = rng.uniform(kScaleMin, kScaleMax);
  s.aspect = std::exp(rng.uniform(-std::log(kAspectMax), std::log(kAspectMax)));
  const double room = std::min(kCentreJitter, (1 - s.scale) / 2 + 0.05);  // big objects stay mostly in frame
  s.centre = {0.5 + rng.uniform(-room, room), 0.5 + rng.uniform(-room, room)};

  s.background = static_cast<BackgroundKind>(rng.uniform_int(0, 2));
  s.background_a = random_colour(rng);
  s.background_b = jitter_colour(rng, s.background_a, kTextureDeltaMax);
  s.frequency = rng.uniform(1, 6);
  s.orientation_rad = rng.uniform(0, kPi);
  s.phase = rng.uniform(0, 2 * kPi);
  s.texture_key = rng.next_u64();

  // The object must stand out from the background's mean colour, or the image has no answer;
  // rejection keeps the colour uniform over what is allowed (the last of 32 tries is kept).
  const cv::Scalar background_mean = (s.background_a + s.background_b) * 0.5;
  for (int tries = 0; tries < 32; ++tries) {
    s.object_colour = random_colour(rng);
    if (distance(s.object_colour, background_mean) >= kObjectContrastMin &&
        std::abs(luma(s.object_colour) - luma(background_mean)) >= kObjectLumaContrastMin)
      break;
  }
  s.object_shade = jitter_colour(rng, s.object_colour, kShadeMax);
  s.shade_angle_rad = rng.uniform(0, 2 * kPi);

  const auto count = rng.uniform_int(kDistractorsMin, kDistractorsMax);
  for (std::int64_t i = 0; i < count; ++i) {
    Distractor d;
    d.blob = rng.bernoulli(kBlobProbability);
    d.in_front = rng.bernoulli(kInFrontProbability);
    d.colour = random_colour(rng);
    d.a = {rng.uniform(-0.1, 1.1), rng.uniform(-0.1, 1.1)};
    if (rng.bernoulli(kDecoyProbability)) {
      d.blob = false;
      d.decoy_label = static_cast<int>(rng.uniform_int(0, static_cast<std::int64_t>(kObjectClassNames.size()) - 1));
      d.b = {rng.uniform(kDecoyScaleMin, kDecoyScaleMax), 0};
      d.angle_deg = rng.uniform(-kRotationMaxDeg, kRotationMaxDeg);
    } else if (d.blob) {
      d.b = {rng.uniform(kBlobRadiusMin, kBlobRadiusMax), rng.uniform(kBlobRadiusMin, kBlobRadiusMax)};
      d.angle_deg = rng.uniform(0, 180);
    } else {
      // A short bent stroke: two segments from a, the second turned by up to 90 degrees.
      const double heading = rng.uniform(0, 2 * kPi), turn = rng.uniform(-kPi / 2, kPi / 2);
      const double first = rng.uniform(kStrokeLengthMin, kStrokeLengthMax);
      const double second = rng.uniform(kStrokeLengthMin, kStrokeLengthMax);
      d.b = d.a + first * cv::Point2d(std::cos(heading), std::sin(heading));
      d.c = d.b + second * cv::Point2d(std::cos(heading + turn), std::sin(heading + turn));
      d.thickness = rng.uniform(kStrokeWidthMin, kStrokeWidthMax);
    }
    s.distractors.push_back(d);
  }

  s.contrast = rng.uniform(kContrastMin, kContrastMax);
  s.brightness = rng.uniform(-kBrightnessMax, kBrightnessMax);
  s.blur_sigma = rng.bernoulli(kBlurProbability) ? rng.uniform(kBlurSigmaMin, kBlurSigmaMax) : 0;
  s.noise_sigma = rng.uniform(kNoiseSigmaMin, kNoiseSigmaMax);
  s.noise_key = rng.next_u64();
  return s;
}

cv::Mat render_objects_scene(const ObjectsScene& s, int width, int height) {
  if (width < 1 || height < 1) throw std::invalid_argument("objects: image size must be positive");
  const cv::Size size(width, height);
  const double short_side = std::min(width, height);
  cv::Mat image = background(s, size);

  for (const auto& d : s.distractors)
    if (!d.in_front) blend(image, distractor_mask(d, size), d.colour);

  // The object: unit outline -> stretch (x by sqrt(aspect), y by 1/sqrt(aspect)) -> rotate ->
  // scale to pixels -> place. OpenCV puts pixel centres on integers, hence the -0.5.
  const double radius = s.scale * short_side / 2, sx = std::sqrt(s.aspect), sy = 1 / sx;
  const double ca = std::cos(s.angle_rad), sa = std::sin(s.angle_rad);
  const cv::Point2d centre(s.centre.x * width - 0.5, s.centre.y * height - 0.5);
  const cv::Mat mask = polygon_mask(shape_outline(s.label), size, [&](cv::Point2d p) {
    const double x = p.x * sx, y = p.y * sy;
    return centre + radius * cv::Point2d(ca * x - sa * y, sa * x + ca * y);
  });
  // Its fill shades linearly from colour to shade across the object, in the shade direction.
  cv::Mat fill(size, CV_32FC3);
  const double dx = std::cos(s.shade_angle_rad), dy = std::sin(s.shade_angle_rad);
  for (int y = 0; y < height; ++y) {
    auto* row = fill.ptr<cv::Vec3f>(y);
    for (int x = 0; x < width; ++x) {
      const double t = std::clamp(0.5 + ((x - centre.x) * dx + (y - centre.y) * dy) / (2 * radius), 0.0, 1.0);
      const cv::Scalar c = s.object_colour * (1 - t) + s.object_shade * t;
      row[x] = cv::Vec3f(static_cast<float>(c[0]), static_cast<float>(c[1]), static_cast<float>(c[2]));
    }
  }
  blend(image, mask, fill);

  for (const auto& d : s.distractors)
    if (d.in_front) blend(image, distractor_mask(d, size), d.colour);

  image.convertTo(image, CV_32FC3, s.contrast, 128 * (1 - s.contrast) + s.brightness);
  if (s.blur_sigma > 0) cv::GaussianBlur(image, image, cv::Size(), s.blur_sigma * short_side / 32);
  Rng noise({s.noise_key, 0, 0});
  for (int y = 0; y < height; ++y) {
    auto* row = image.ptr<float>(y);
    for (int i = 0; i < width * 3; ++i) row[i] += static_cast<float>(s.noise_sigma * bell_noise(noise));
  }
  cv::Mat out;
  image.convertTo(out, CV_8UC3);  // rounds and saturates
  return out;
}

cv::Mat objects_image(std::uint64_t seed, std::uint64_t index, int label, int width, int height) {
  return render_objects_scene(sample_objects_scene(seed, index, label), width, height);
}

}  // namespace augflow::data
