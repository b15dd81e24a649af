// The error types every part of augflow throws. The one header shared by augment/, pipeline/
// and model/ (it holds no logic), so that apps/main.cpp can map any error to an exit code.
// The library never calls exit() or abort(): it throws one of these.
//
// API: public, part of augflow::common; installed as <augflow/common/error.hpp>.
#pragma once

#include <stdexcept>
#include <string>

namespace augflow {

/// Base of all augflow errors; what() is a complete message for a person.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A spec (augmentation, model, ...) that does not parse: names the token and its position.
class SpecError : public Error {
 public:
  SpecError(std::string message, std::string token = {}, std::size_t position = 0)
      : Error(std::move(message)), token_(std::move(token)), position_(position) {}
  const std::string& token() const { return token_; }
  std::size_t position() const { return position_; }

 private:
  std::string token_;
  std::size_t position_;
};

/// One input (an image file, a record) that cannot be used. Caught per sample and counted.
class DataError : public Error {
 public:
  DataError(std::string path, std::string reason)
      : Error(path.empty() ? reason : path + ": " + reason),
        path_(std::move(path)), reason_(std::move(reason)) {}
  const std::string& path() const { return path_; }
  const std::string& reason() const { return reason_; }

 private:
  std::string path_;
  std::string reason_;
};

/// Reading or writing a file failed (missing, unreadable, disk full).
class IoError : public Error {
 public:
  using Error::Error;
};

/// Tensor or image shapes that do not fit together.
class ShapeError : public Error {
 public:
  using Error::Error;
};

/// A bad value for an option or parameter (out of range, swapped bounds).
class ConfigError : public Error {
 public:
  using Error::Error;
};

}  // namespace augflow
