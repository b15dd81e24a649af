// The checkpoint file format (layout and contract in model/checkpoint.hpp).
#include "model/checkpoint.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <bit>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <set>
#include <thread>

#include "common/error.hpp"
#include "model/config.hpp"
#include "model/net.hpp"

namespace augflow::model {
namespace {

constexpr char kMagic[12] = {'A', 'U', 'G', 'F', 'L', 'O', 'W', '\0', 'C', 'K', 'P', 'T'};
constexpr std::size_t kPreamble = 32;  // magic, version, header length, data length
constexpr std::size_t kTrailer = 4;    // CRC-32

constexpr const char* kGroups[] = {"params", "state", "optimizer"};

void put_u32(unsigned char* out, std::uint32_t x) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<unsigned char>(x >> (8 * i));
}
void put_u64(unsigned char* out, std::uint64_t x) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(x >> (8 * i));
}
std::uint32_t get_u32(const unsigned char* in) {
  std::uint32_t x = 0;
  for (int i = 3; i >= 0; --i) x = (x << 8) | in[i];
  return x;
}
std::uint64_t get_u64(const unsigned char* in) {
  std::uint64_t x = 0;
  for (int i = 7; i >= 0; --i) x = (x << 8) | in[i];
  return x;
}

std::string errno_text(int err) { return std::strerror(err); }

/// Writes the file through stdio, keeping the CRC of everything after the magic. Failures are
/// remembered (errno) and reported once, by finish().
class Writer {
 public:
  explicit Writer(std::FILE* file) : file_(file) {}

  void raw(const void* data, std::size_t size, bool checksum = true) {
    if (error_ || size == 0) return;
    if (std::fwrite(data, 1, size, file_) != size) {
      error_ = errno ? errno : EIO;
      return;
    }
    if (checksum) crc_ = crc32_z(crc_, static_cast<const Bytef*>(data), size);
  }

  void floats(const float* data, std::size_t count) {
    if constexpr (std::endian::native == std::endian::little) {
      raw(data, count * sizeof(float));
    } else {
      unsigned char chunk[4096];
      std::size_t filled = 0;
      for (std::size_t i = 0; i < count; ++i) {
        put_u32(chunk + filled, std::bit_cast<std::uint32_t>(data[i]));
        filled += 4;
        if (filled == sizeof chunk) {
          raw(chunk, filled);
          filled = 0;
        }
      }
      raw(chunk, filled);
    }
  }

  std::uint32_t crc() const { return static_cast<std::uint32_t>(crc_); }
  int error() const { return error_; }

 private:
  std::FILE* file_;
  uLong crc_ = crc32_z(0L, Z_NULL, 0);
  int error_ = 0;
};

struct TensorRef {
  std::string name;
  const char* group;
  const Tensor* tensor;
};

std::vector<TensorRef> tensors_of(const Checkpoint& c) {
  std::vector<TensorRef> refs;
  for (const auto& [name, t] : c.params) refs.push_back({name, kGroups[0], &t});
  for (const auto& [name, t] : c.state) refs.push_back({name, kGroups[1], &t});
  for (const auto& [name, t] : c.optimizer_state) refs.push_back({name, kGroups[2], &t});
  return refs;
}

nlohmann::json header_of(const Checkpoint& c, const std::vector<TensorRef>& tensors) {
  nlohmann::json table = nlohmann::json::array();
  for (const auto& ref : tensors) {
    const Shape& s = ref.tensor->shape();
    if (ref.tensor->size() != s.size())
      throw Error("save_checkpoint: tensor " + ref.name + " holds " + std::to_string(ref.tensor->size()) +
                  " values but its shape " + s.str() + " says " + std::to_string(s.size()));
    table.push_back({{"name", ref.name}, {"group", ref.group}, {"shape", {s.n, s.c, s.h, s.w}}});
  }
  return {{"model", c.model_spec},
          {"input", {c.input.c, c.input.h, c.input.w}},
          {"classes", c.classes},
          {"class_names", c.class_names},
          {"epoch", c.epoch},
          {"step", c.step},
          {"seed", c.seed},
          {"augmentation", c.augmentation},
          {"optimizer", c.optimizer},
          {"meta", c.meta},
          {"tensors", std::move(table)}};
}

/// A temporary name next to `path` that no other writer (thread or process) uses.
std::string temp_name(const std::filesystem::path& path, int attempt) {
  static std::atomic<unsigned> counter{0};
  const auto dir = path.parent_path();
  const std::string name = "." + path.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                           std::to_string(counter.fetch_add(1)) + "-" + std::to_string(attempt);
  return (dir / name).string();
}

/// fsync of the folder, so that the rename itself survives a crash. Best effort: some file
/// systems do not support it, and the data is already safe in the file.
void sync_folder(const std::filesystem::path& path) {
  const auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

/// Test-only hook (tests/test_crash.cpp): AUGFLOW_TEST_CHECKPOINT_PAUSE_MS=N makes every
/// checkpoint write pause N ms after its header and again after its tensors, with what was
/// written so far flushed to the temporary file, so a SIGKILL lands inside a write. Unset (the
/// normal case) it costs one getenv per process.
void test_hook_pause(std::FILE* file) {
  static const long pause_ms = [] {
    const char* text = std::getenv("AUGFLOW_TEST_CHECKPOINT_PAUSE_MS");
    return text ? std::strtol(text, nullptr, 10) : 0L;
  }();
  if (pause_ms <= 0) return;
  std::fflush(file);
  std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
}

[[noreturn]] void data_error(const std::string& path, const std::string& reason) { throw DataError(path, reason); }

// ---------------------------------------------------------------------------------------------
// Reading the header.

const nlohmann::json& field(const nlohmann::json& header, const char* key) {
  const auto it = header.find(key);
  if (it == header.end()) throw std::invalid_argument(std::string("no \"") + key + "\"");
  return *it;
}

int small_int(const nlohmann::json& value, const char* what) {
  if (!value.is_number_integer() || value.get<std::int64_t>() < 0 || value.get<std::int64_t>() > INT_MAX)
    throw std::invalid_argument(std::string(what) + " must be a whole number from 0 to " + std::to_string(INT_MAX) +
                                ", not " + value.dump());
  return static_cast<int>(value.get<std::int64_t>());
}

std::string string_field(const nlohmann::json& header, const char* key) {
  const auto& value = field(header, key);
  if (!value.is_string()) throw std::invalid_argument(std::string("\"") + key + "\" must be a string");
  return value.get<std::string>();
}

std::int64_t int_field(const nlohmann::json& header, const char* key) {
  const auto& value = field(header, key);
  if (!value.is_number_integer() || (value.is_number_unsigned() && value.get<std::uint64_t>() > INT64_MAX))
    throw std::invalid_argument(std::string("\"") + key + "\" must be a whole number");
  return value.get<std::int64_t>();
}

/// Fills the header fields of `c` and returns the tensor table, checked against `data_bytes`.
struct TableEntry {
  std::string name;
  int group;
  Shape shape;
};

std::vector<TableEntry> read_header(const nlohmann::json& header, std::uint64_t data_bytes, Checkpoint& c) {
  if (!header.is_object()) throw std::invalid_argument("not a JSON object");
  c.model_spec = string_field(header, "model");
  const auto& input = field(header, "input");
  if (!input.is_array() || input.size() != 3) throw std::invalid_argument("\"input\" must be [C, H, W]");
  c.input = Shape{0, small_int(input[0], "input C"), small_int(input[1], "input H"), small_int(input[2], "input W")};
  c.classes = small_int(field(header, "classes"), "\"classes\"");
  const auto& names = field(header, "class_names");
  if (!names.is_array()) throw std::invalid_argument("\"class_names\" must be a list");
  c.class_names.clear();
  for (const auto& name : names) {
    if (!name.is_string()) throw std::invalid_argument("\"class_names\" must hold strings");
    c.class_names.push_back(name.get<std::string>());
  }
  c.epoch = int_field(header, "epoch");
  c.step = int_field(header, "step");
  const auto& seed = field(header, "seed");
  if (!seed.is_number_unsigned() && !(seed.is_number_integer() && seed.get<std::int64_t>() >= 0))
    throw std::invalid_argument("\"seed\" must be a whole number >= 0");
  c.seed = seed.get<std::uint64_t>();
  c.augmentation = string_field(header, "augmentation");
  c.optimizer = string_field(header, "optimizer");
  c.meta = field(header, "meta");
  if (!c.meta.is_object()) throw std::invalid_argument("\"meta\" must be an object");

  const auto& table = field(header, "tensors");
  if (!table.is_array()) throw std::invalid_argument("\"tensors\" must be a list");
  std::vector<TableEntry> entries;
  std::set<std::pair<int, std::string>> seen;
  std::uint64_t floats_left = data_bytes / sizeof(float);
  std::uint64_t floats_total = 0;
  for (const auto& item : table) {
    if (!item.is_object()) throw std::invalid_argument("each tensor must be an object");
    TableEntry entry;
    entry.name = string_field(item, "name");
    const std::string group = string_field(item, "group");
    entry.group = -1;
    for (int g = 0; g < 3; ++g)
      if (group == kGroups[g]) entry.group = g;
    if (entry.group < 0) throw std::invalid_argument("tensor " + entry.name + ": unknown group \"" + group + "\"");
    if (!seen.insert({entry.group, entry.name}).second)
      throw std::invalid_argument("tensor " + entry.name + " appears twice in " + group);
    const auto& shape = field(item, "shape");
    if (!shape.is_array() || shape.size() != 4)
      throw std::invalid_argument("tensor " + entry.name + ": \"shape\" must be [N, C, H, W]");
    int dims[4];
    std::uint64_t count = 1;
    for (int d = 0; d < 4; ++d) {
      dims[d] = small_int(shape[d], "a tensor dimension");
      // Overflow-safe: the product must fit in the data that is left.
      if (dims[d] != 0 && count > floats_left / static_cast<std::uint64_t>(dims[d]))
        throw std::invalid_argument("tensor " + entry.name + " (" + shape.dump() + ") is larger than the " +
                                    std::to_string(data_bytes) + " bytes of tensor data in the file");
      count *= static_cast<std::uint64_t>(dims[d]);
    }
    floats_left -= count;
    floats_total += count;
    entry.shape = Shape{dims[0], dims[1], dims[2], dims[3]};
    entries.push_back(std::move(entry));
  }
  if (floats_total * sizeof(float) != data_bytes)
    throw std::invalid_argument("the tensors need " + std::to_string(floats_total * sizeof(float)) +
                                " bytes of data but the file has " + std::to_string(data_bytes));
  return entries;
}

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint) {
  const auto tensors = tensors_of(checkpoint);
  const std::string header =
      header_of(checkpoint, tensors).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::uint64_t data_bytes = 0;
  for (const auto& ref : tensors) data_bytes += ref.tensor->size() * sizeof(float);

  const std::filesystem::path target(path);
  std::string temp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    temp = temp_name(target, attempt);
    fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int err = errno;
    throw IoError("cannot write checkpoint " + path + ": cannot create a temporary file " + temp + ": " +
                  errno_text(err));
  }
  std::FILE* file = ::fdopen(fd, "wb");
  if (!file) {
    const int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    throw IoError("cannot write checkpoint " + path + ": " + errno_text(err));
  }

  Writer out(file);
  unsigned char preamble[kPreamble - sizeof kMagic];
  put_u32(preamble, kCheckpointVersion);
  put_u64(preamble + 4, header.size());
  put_u64(preamble + 12, data_bytes);
  out.raw(kMagic, sizeof kMagic, false);
  out.raw(preamble, sizeof preamble);
  out.raw(header.data(), header.size());
  test_hook_pause(file);
  for (const auto& ref : tensors) out.floats(ref.tensor->data(), ref.tensor->size());
  test_hook_pause(file);
  unsigned char crc[kTrailer];
  put_u32(crc, out.crc());
  out.raw(crc, sizeof crc, false);

  int err = out.error();
  if (!err && std::fflush(file) != 0) err = errno;
  if (!err && ::fsync(::fileno(file)) != 0) err = errno;
  if (std::fclose(file) != 0 && !err) err = errno;
  if (!err && std::rename(temp.c_str(), path.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(temp.c_str());
    throw IoError("cannot write checkpoint " + path + ": " + errno_text(err));
  }
  sync_folder(target);
}

Checkpoint load_checkpoint(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) {
    const int err = errno;
    throw IoError("cannot open checkpoint " + path + ": " + errno_text(err));
  }
  // Closes the file on every path out.
  const std::unique_ptr<std::FILE, int (*)(std::FILE*)> guard(file, &std::fclose);
  struct stat info {};
  if (::fstat(::fileno(file), &info) != 0) {
    const int err = errno;
    throw IoError("cannot read checkpoint " + path + ": " + errno_text(err));
  }
  if (S_ISDIR(info.st_mode)) throw IoError("cannot read checkpoint " + path + ": " + errno_text(EISDIR));
  // The whole file is read (the body is needed whole for its checksum anyway), then parsed by
  // the same code the fuzzer drives.
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(info.st_size));
  const std::size_t got = bytes.empty() ? 0 : std::fread(bytes.data(), 1, bytes.size(), file);
  if (got != bytes.size()) {
    if (std::ferror(file)) throw IoError("cannot read checkpoint " + path + ": " + errno_text(errno ? errno : EIO));
    data_error(path, "truncated while reading (the file shrank?)");
  }
  return load_checkpoint_bytes(bytes, path);
}

Checkpoint load_checkpoint_bytes(std::span<const std::uint8_t> bytes, const std::string& path) {
  const auto size = static_cast<std::uint64_t>(bytes.size());
  const unsigned char* preamble = bytes.data();
  if (size == 0 || std::memcmp(preamble, kMagic, std::min<std::size_t>(bytes.size(), sizeof kMagic)) != 0)
    data_error(path, "not an augflow checkpoint (the file does not start with \"AUGFLOW\\0CKPT\")");
  if (size < kPreamble + kTrailer)
    data_error(path, "truncated: a checkpoint has at least " + std::to_string(kPreamble + kTrailer) +
                         " bytes, found " + std::to_string(size));
  const std::uint32_t version = get_u32(preamble + 12);
  if (version != kCheckpointVersion)
    data_error(path, "checkpoint format version " + std::to_string(version) + " is not supported: this build reads version " +
                         std::to_string(kCheckpointVersion) + " (written by a newer augflow, or corrupt)");
  const std::uint64_t header_bytes = get_u64(preamble + 16);
  const std::uint64_t data_bytes = get_u64(preamble + 24);
  // Both lengths are bounded by the file's size before they are added or allocated.
  if (header_bytes > size || data_bytes > size || kPreamble + header_bytes + data_bytes + kTrailer > size)
    data_error(path, "truncated: the checkpoint's lengths say " +
                         (header_bytes > size || data_bytes > size
                              ? std::string("more than ") + std::to_string(size)
                              : std::to_string(kPreamble + header_bytes + data_bytes + kTrailer)) +
                         " bytes, found " + std::to_string(size));
  const std::uint64_t expected = kPreamble + header_bytes + data_bytes + kTrailer;
  if (expected < size)
    data_error(path, "corrupt: " + std::to_string(size - expected) + " unexpected bytes at the end (expected " +
                         std::to_string(expected) + " bytes, found " + std::to_string(size) + ")");

  const unsigned char* body = bytes.data() + kPreamble;
  uLong crc = crc32_z(0L, Z_NULL, 0);
  crc = crc32_z(crc, preamble + sizeof kMagic, kPreamble - sizeof kMagic);
  crc = crc32_z(crc, body, static_cast<std::size_t>(header_bytes + data_bytes));
  const std::uint32_t stored = get_u32(body + header_bytes + data_bytes);
  if (static_cast<std::uint32_t>(crc) != stored)
    data_error(path, "corrupt: checksum mismatch (the file was damaged after it was written)");

  Checkpoint c;
  std::vector<TableEntry> table;
  try {
    const auto header = nlohmann::json::parse(body, body + header_bytes);
    table = read_header(header, data_bytes, c);
  } catch (const nlohmann::json::exception& e) {
    data_error(path, std::string("malformed checkpoint header: ") + e.what());
  } catch (const std::invalid_argument& e) {
    data_error(path, std::string("malformed checkpoint header: ") + e.what());
  }

  const unsigned char* data = body + header_bytes;
  for (const auto& entry : table) {
    Tensor t(entry.shape);
    if constexpr (std::endian::native == std::endian::little) {
      if (t.size()) std::memcpy(t.data(), data, t.size() * sizeof(float));
    } else {
      for (std::size_t i = 0; i < t.size(); ++i) t[i] = std::bit_cast<float>(get_u32(data + 4 * i));
    }
    data += t.size() * sizeof(float);
    auto& group = entry.group == 0 ? c.params : entry.group == 1 ? c.state : c.optimizer_state;
    group.emplace(entry.name, std::move(t));
  }
  return c;
}

// Net offers only non-const accessors for its layers and parameters; store_net reads them and
// changes nothing, hence the const_cast (see the report: const overloads are proposed).
void store_net(const Net& net, Checkpoint& checkpoint) {
  Net& n = const_cast<Net&>(net);
  checkpoint.model_spec = print_model_spec(net.spec());
  checkpoint.input = net.input_shape();
  checkpoint.input.n = 0;
  checkpoint.classes = net.classes();
  checkpoint.params.clear();
  checkpoint.state.clear();
  for (Param* p : n.params()) checkpoint.params[p->name] = p->value;
  for (std::size_t i = 0; i < n.layer_count(); ++i) {
    const auto state = n.layer(i).state();
    for (std::size_t j = 0; j < state.size(); ++j)
      checkpoint.state[std::to_string(i) + ".state" + std::to_string(j)] = *state[j];
  }
}

void restore_net(Net& net, const Checkpoint& checkpoint) {
  // Everything is checked before anything is copied, so a failed restore leaves the net as it was.
  std::vector<std::pair<Tensor*, const Tensor*>> copies;
  std::string hint;
  const std::string model = print_model_spec(net.spec());
  if (!checkpoint.model_spec.empty() && checkpoint.model_spec != model)
    hint = " (the checkpoint was saved from the model '" + checkpoint.model_spec + "', this model is '" + model + "')";
  const auto match = [&](const std::string& kind, const std::string& name, Tensor* into,
                         const std::map<std::string, Tensor>& from) {
    const auto it = from.find(name);
    if (it == from.end())
      throw ShapeError("checkpoint has no " + kind + " " + name + " but the model has " + name + " " +
                       into->shape().str() + hint);
    if (it->second.shape() != into->shape() || it->second.size() != into->size())
      throw ShapeError("checkpoint has " + name + " " + it->second.shape().str() + " but the model has " +
                       into->shape().str() + hint);
    copies.emplace_back(into, &it->second);
  };
  std::set<std::string> param_names;
  std::set<std::string> state_names;
  for (Param* p : net.params()) {
    match("parameter", p->name, &p->value, checkpoint.params);
    param_names.insert(p->name);
  }
  for (std::size_t i = 0; i < net.layer_count(); ++i) {
    const auto state = net.layer(i).state();
    for (std::size_t j = 0; j < state.size(); ++j) {
      const std::string name = std::to_string(i) + ".state" + std::to_string(j);
      match("state tensor", name, state[j], checkpoint.state);
      state_names.insert(name);
    }
  }
  for (const auto& [name, t] : checkpoint.params)
    if (!param_names.count(name))
      throw ShapeError("checkpoint has " + name + " " + t.shape().str() + " but the model has no such parameter" + hint);
  for (const auto& [name, t] : checkpoint.state)
    if (!state_names.count(name))
      throw ShapeError("checkpoint has state " + name + " " + t.shape().str() + " but the model has no such tensor" + hint);
  for (auto& [into, from] : copies) std::copy(from->data(), from->data() + from->size(), into->data());
}

}  // namespace augflow::model
