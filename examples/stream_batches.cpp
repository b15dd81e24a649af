// Streams augmented batches from an image folder into a buffer the caller owns: what a training
// loop of another framework (LibTorch, ONNX Runtime training) does with augflow's loader. Links
// augflow::loader only (OpenCV and oneTBB; no Eigen, no trainer).
//
//   stream_batches FOLDER [SPEC] [BATCH] [EPOCHS]
//
// FOLDER is an ImageFolder (FOLDER/<class>/<image>); SPEC an augmentation spec ending in a
// fixed-size crop and normalize. Prints one line per batch: epoch, batch, shape, first labels
// and the mean of the buffer; exits 1 if no batch came out.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include <augflow/augment/spec.hpp>
#include <augflow/common/error.hpp>
#include <augflow/pipeline/loader.hpp>
#include <augflow/version.hpp>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FOLDER [SPEC] [BATCH] [EPOCHS]\n", argv[0]);
    return 2;
  }
  const std::string folder = argv[1];
  const std::string spec = argc > 2 ? argv[2] : "hflip | resized_crop(size=32) | normalize(imagenet)";
  const int batch_size = argc > 3 ? std::atoi(argv[3]) : 8;
  const int epochs = argc > 4 ? std::atoi(argv[4]) : 2;
  try {
    namespace ap = augflow::pipeline;
    const auto warn = [](const std::string& message) { std::fprintf(stderr, "warning: %s\n", message.c_str()); };
    ap::Dataset data = ap::open_image_folder(folder, warn);
    auto pipeline = std::make_shared<const augflow::augment::Pipeline>(augflow::augment::parse_pipeline(spec));
    ap::LoaderOptions options;
    options.batch_size = batch_size;
    options.seed = 1;
    options.last_epoch = epochs - 1;
    ap::Loader loader(std::move(data), pipeline, options, warn);
    const ap::SampleShape shape = loader.sample_shape();
    std::printf("augflow %s: %zu images, %zu classes, samples %dx%dx%d\n", AUGFLOW_VERSION_STRING,
                loader.dataset().size(), loader.dataset().class_names.size(), shape.channels, shape.height,
                shape.width);

    // The caller's buffer: a training loop would wrap it (torch::from_blob, Ort::Value) without a copy.
    std::vector<float> buffer(static_cast<std::size_t>(batch_size) * shape.floats());
    std::vector<int> labels(batch_size);
    int batches = 0;
    for (int epoch = 0; epoch < epochs; ++epoch) {
      loader.start_epoch(epoch);
      while (auto batch = loader.next()) {
        const std::size_t floats = static_cast<std::size_t>(batch->size()) * shape.floats();
        std::copy_n(batch->data(), floats, buffer.begin());
        std::copy(batch->labels().begin(), batch->labels().end(), labels.begin());
        double sum = 0;
        for (std::size_t i = 0; i < floats; ++i) sum += buffer[i];
        std::printf("epoch %d batch %llu: %d x %d x %d x %d, labels %d %d.., mean %.4f\n", epoch,
                    static_cast<unsigned long long>(batch->index()), batch->size(), shape.channels,
                    shape.height, shape.width, labels[0], batch->size() > 1 ? labels[1] : -1,
                    floats ? sum / floats : 0.0);
        ++batches;
      }
    }
    std::printf("%d batches, %zu files skipped\n", batches, loader.bad_files().count());
    return batches > 0 ? 0 : 1;
  } catch (const augflow::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
