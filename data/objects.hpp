// The "objects" data set of augflow_make_images: small colour photos of procedural shapes, a
// stand-in for the photo folders users bring (time-to-accuracy benchmarks, fine-tuning demos).
//
// Contract: an image is a pure function of (seed, index, label, width, height). Its scene (pose,
// colours, background, clutter, lighting, blur, noise level) is drawn from
// Rng({seed, 0, index}, kSceneStream); its pixel noise from keys stored in the scene. So
// `render_objects_scene(sample_objects_scene(...))` gives the same pixels on every thread, in
// any order, and a test can replay or edit a scene.
//
// The class is the shape and nothing else: the object's colour, the background's colour and
// texture, the distractors and the lighting are drawn independently of the label, so a
// classifier of colour statistics stays at chance (tested) and a model has to learn shape under
// rotation, scale, stretch, occlusion and noise.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include <opencv2/core.hpp>

#include "common/rng.hpp"

namespace augflow::data {

/// Class names in label order; `--classes K` uses the first K.
inline constexpr std::array<std::string_view, 10> kObjectClassNames{
    "circle", "triangle", "square", "star", "ring", "cross", "crescent", "heart", "arrow", "hexagon"};

/// Rng stream of the scene draws (pixel noise uses keys drawn from it, not other streams).
inline constexpr std::uint64_t kSceneStream = 1;

/// How the background is textured before the object and clutter are drawn.
enum class BackgroundKind { smooth_noise, stripes, gradient };

/// A stroke, blob or decoy of another colour, drawn behind or over the object.
struct Distractor {
  /// A decoy: a small shape of class decoy_label (any class, drawn independently of the
  /// image's), centred at a, size b.x (circumradius over half the short side, as the object's
  /// scale) and rotation angle_deg; -1: a blob or a stroke. The image's class is its big shape:
  /// decoys are at most 0.3 in size, the object at least 0.4.
  int decoy_label = -1;
  bool blob = false;         ///< a filled ellipse; else a polyline stroke
  bool in_front = false;     ///< drawn after the object (it may occlude it)
  cv::Point2d a, b, c;       ///< stroke: three points of a bent line; blob: centre in a, half-axes in b
  double angle_deg = 0;      ///< blob orientation
  double thickness = 1;      ///< stroke width, fraction of the frame's short side (x 100)
  cv::Scalar colour;
};

/// Every random choice of one image. Positions and sizes are fractions of the frame (x of the
/// width, y of the height; sizes of the short side), so a scene renders at any size.
struct ObjectsScene {
  int label = 0;
  // Pose of the object: rotation, size (its circumradius over half the short side, 0.4..0.9),
  // aspect stretch (x over y scale), centre.
  double angle_rad = 0, scale = 0.6, aspect = 1;
  cv::Point2d centre{0.5, 0.5};
  cv::Scalar object_colour, object_shade;   ///< fill goes from colour to shade across the object
  double shade_angle_rad = 0;
  BackgroundKind background = BackgroundKind::smooth_noise;
  cv::Scalar background_a, background_b;    ///< the texture blends these two colours
  double frequency = 2;                     ///< stripes per frame, or noise cells per side
  double orientation_rad = 0, phase = 0;
  std::uint64_t texture_key = 0;            ///< seeds the smooth-noise cells
  std::vector<Distractor> distractors;
  double contrast = 1, brightness = 0;      ///< out = (in - 128) * contrast + 128 + brightness
  double blur_sigma = 0;                    ///< Gaussian blur in pixels at 32 px (0: none)
  double noise_sigma = 0;                   ///< per-pixel noise (bell-shaped), standard deviation in grey levels
  std::uint64_t noise_key = 0;              ///< seeds the per-pixel noise
};

/// Draws the scene of image `index` with class `label` (0..9).
ObjectsScene sample_objects_scene(std::uint64_t seed, std::uint64_t index, int label);

/// Renders `scene` as an 8-bit BGR image of width x height (anti-aliased shapes).
cv::Mat render_objects_scene(const ObjectsScene& scene, int width, int height);

/// The image `index` of the data set: render_objects_scene(sample_objects_scene(...)).
cv::Mat objects_image(std::uint64_t seed, std::uint64_t index, int label, int width, int height);

/// The outline(s) of class `label` in unit coordinates (centred on 0, circumradius 1, y down).
/// Rendering fills the first polygon and cuts the others out (the ring's hole, the crescent's
/// bite); the heart and the cross are single polygons.
std::vector<std::vector<cv::Point2d>> shape_outline(int label);

}  // namespace augflow::data
