#include "augment/args.hpp"

#include <charconv>

#include "common/error.hpp"

namespace augflow::augment {

const Value& Args::at(const std::string& key) const {
  const auto it = values_.find(key);
  // A missing key is a bug in a transform's declaration, not a user error.
  if (it == values_.end()) throw Error(name_ + ": internal: no parameter '" + key + "'");
  return it->second;
}

double Args::number(const std::string& key) const { return at(key).lo; }
int Args::integer(const std::string& key) const { return static_cast<int>(at(key).lo); }
std::pair<double, double> Args::range(const std::string& key) const {
  const auto& v = at(key);
  return {v.lo, v.hi};
}
const std::string& Args::word(const std::string& key) const { return at(key).word; }
const std::vector<double>& Args::list(const std::string& key) const { return at(key).list; }

std::string format_value(const Value& value) {
  switch (value.kind) {
    case ValueKind::number:
    case ValueKind::integer:
      return format_number(value.lo);
    case ValueKind::range:
      return format_number(value.lo) + ":" + format_number(value.hi);
    case ValueKind::word:
      return value.word;
    case ValueKind::list: {
      std::string text = "[";
      for (std::size_t i = 0; i < value.list.size(); ++i) {
        if (i) text += ',';
        text += format_number(value.list[i]);
      }
      return text + "]";
    }
  }
  return {};
}

}  // namespace augflow::augment
