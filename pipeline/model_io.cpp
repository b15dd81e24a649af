#include "pipeline/model_io.hpp"

namespace augflow::pipeline {

model::Checkpoint load_model(const std::string& path) { return model::load_checkpoint(path); }

}  // namespace augflow::pipeline
