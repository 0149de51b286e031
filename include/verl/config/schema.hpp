#pragma once
//! \file
//! Typed configuration structs declared once. A struct lists its keys in one member template:
//! \code
//!   struct OptimConfig {
//!     double lr = 1e-6;
//!     std::vector<double> betas{0.9, 0.999};
//!     template <class V> void describe(V& v) {
//!       v("lr", lr, "learning rate");
//!       v("betas", betas, "AdamW's (beta1, beta2)");
//!       v.ignore("optimizer_impl", "Python import path of the optimizer; verl-cpp has its own AdamW");
//!     }
//!     void validate() const { config::require(lr >= 0, "lr", "must be >= 0, got ", lr); }  // optional
//!   };
//! \endcode
//! and gets: reading from a YAML/JSON tree with verl's rules (`load<T>` / `load_config<T>`), `key=value`
//! command-line overrides, OmegaConf interpolations (`${a.b}`, `${.sibling}`, `${oc.select:a.b,default}`,
//! `${oc.env:VAR,default}`), printing (`to_yaml`), and a Markdown reference (`reference_markdown`).
//!
//! Member types: bool, integer types, double/float, std::string, std::vector<T>, std::optional<T> (null),
//! enums with ADL `to_string(E)` and `parse(std::string_view, std::type_identity<E>)` (and optionally
//! `enum_values(std::type_identity<E>)` for the reference), Json (free-form), nested described structs, and
//! any type with a `value_traits<T>` specialisation (the extension point).
//! Field options: a 4th argument `interpolate("${oc.select:x.y,1}")` makes the default an interpolation, as
//! verl's yaml does (e.g. critic.ppo_epochs follows actor.ppo_epochs unless set).
//! Hooks: `void post_init()` (normalises deprecated aliases, runs first) and `void validate() const` (runs
//! after the members were read, children before parents); throw with config::require / config::invalid
//! naming the key relative to the struct, and the error names the full key path and where it was set.
//! Errors are verl::ConfigError naming the key path, `file:line` (or the override), and what was expected;
//! unknown keys get a did-you-mean (Levenshtein over the siblings, and the same leaf name elsewhere).

#include "verl/config/yaml.hpp"
#include "verl/core/errors.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace verl::config {

// -------------------------------------------------------------------------------------------------------------
// Declaring fields

//! A default given as an interpolation (4th argument of a field declaration).
struct Interpolation {
  std::string_view expression;
};
//! `v("ppo_epochs", ppo_epochs, "...", interpolate("${oc.select:actor_rollout_ref.actor.ppo_epochs,1}"))`.
[[nodiscard]] constexpr Interpolation interpolate(std::string_view expression) { return {expression}; }

//! Thrown by validate() hooks; `key` is relative to the struct being validated (dotted for deeper keys).
class InvalidValue : public ConfigError {
 public:
  InvalidValue(std::string key, const std::string& message) : ConfigError(message), key_(std::move(key)) {}
  [[nodiscard]] const std::string& key() const { return key_; }

 private:
  std::string key_;
};

//! Throws InvalidValue for `key` with the concatenated message.
template <class... Parts>
[[noreturn]] void invalid(std::string key, Parts&&... parts) {
  throw InvalidValue(std::move(key), verl::detail::concat_message(std::forward<Parts>(parts)...));
}
//! Throws InvalidValue for `key` unless `condition`.
template <class... Parts>
void require(bool condition, std::string key, Parts&&... parts) {
  if (!condition) invalid(std::move(key), std::forward<Parts>(parts)...);
}
//! require that `value` is one of `allowed`; the message lists them.
inline void require_one_of(std::string_view value, std::initializer_list<std::string_view> allowed, std::string key) {
  for (auto a : allowed)
    if (a == value) return;
  std::string list;
  for (auto a : allowed) list += (list.empty() ? "\"" : ", \"") + std::string(a) + "\"";
  invalid(std::move(key), "is \"", value, "\", expected one of ", list);
}

//! Extension point: specialise for a custom member type with
//! `static std::string name()`, `static Json encode(const T&)`, `static void decode(const Json&, T&,
//! const DecodeContext&)` (throw with ctx.type_error / ctx.fail).
template <class T, class = void>
struct value_traits;

//! Where a value being decoded sits, for messages.
struct DecodeContext {
  std::string path;
  std::string where;  //!< "file:line", "command-line override `a=1`" or "default"

  [[noreturn]] void fail(std::string_view what) const {
    throw ConfigError(verl::detail::concat_message("verl::config: `", path, "` (", where, "): ", what));
  }
  [[noreturn]] void type_error(std::string_view expected, const Json& found) const {
    fail(verl::detail::concat_message("expected ", expected, ", found ", describe_value(found)));
  }
  //! `s` cut to 80 characters with "..." (a whole section in a message would drown it).
  [[nodiscard]] static std::string shorten(std::string s) {
    if (s.size() > 80) s = s.substr(0, 77) + "...";
    return s;
  }
  //! "string \"yes\"", "integer 3", "float 1.5", "null", "a mapping", "a sequence".
  [[nodiscard]] static std::string describe_value(const Json& v) {
    switch (v.type()) {
      case Json::value_t::null: return "null";
      case Json::value_t::boolean: return std::string("boolean ") + (v.get<bool>() ? "true" : "false");
      case Json::value_t::number_integer:
      case Json::value_t::number_unsigned: return "integer " + detail::scalar_text(v);
      case Json::value_t::number_float: return "float " + detail::scalar_text(v);
      case Json::value_t::string: return "string " + detail::quote(v.get<std::string>());
      case Json::value_t::object: return "a mapping " + shorten(to_flow_yaml(v));
      case Json::value_t::array: return "a sequence " + shorten(to_flow_yaml(v));
      default: return "an unsupported value";
    }
  }
};

namespace detail {

//! Accepts any field declaration; used to detect describe().
struct DescribeProbe {
  template <class... A>
  void operator()(A&&...) {}
  void ignore(std::string_view, std::string_view) {}
};

}  // namespace detail

//! A struct with `template <class V> void describe(V&)`.
template <class T>
concept Described = std::is_class_v<T> && requires(T& t, detail::DescribeProbe& v) { t.describe(v); };

//! An enum with ADL `to_string(E)` and `parse(std::string_view, std::type_identity<E>)`.
template <class E>
concept ConfigEnum = std::is_enum_v<E> && requires(E e, std::string_view s) {
  { to_string(e) } -> std::convertible_to<std::string_view>;
  { parse(s, std::type_identity<E>{}) } -> std::same_as<E>;
};

namespace detail {
template <class T> struct is_optional : std::false_type {};
template <class T> struct is_optional<std::optional<T>> : std::true_type {};
template <class T> struct is_vector : std::false_type {};
template <class T, class A> struct is_vector<std::vector<T, A>> : std::true_type {};
template <class T> concept HasValidate = requires(const T& t) { t.validate(); };
template <class T> concept HasPostInit = requires(T& t) { t.post_init(); };
template <class E> concept HasEnumValues = requires { enum_values(std::type_identity<E>{}); };
template <class T> concept HasTraits = requires { value_traits<T>::name(); };
template <class T> concept Integer = std::is_integral_v<T> && !std::is_same_v<T, bool>;
}  // namespace detail

// -------------------------------------------------------------------------------------------------------------
// Type names, encoding

//! The type as the reference shows it: bool, int, float, string, list[T], T | null, "a" | "b", ...
template <class T>
[[nodiscard]] std::string type_name() {
  if constexpr (std::is_same_v<T, bool>) return "bool";
  else if constexpr (detail::Integer<T>) return "int";
  else if constexpr (std::is_floating_point_v<T>) return "float";
  else if constexpr (std::is_same_v<T, std::string>) return "string";
  else if constexpr (std::is_same_v<T, Json>) return "any";
  else if constexpr (detail::is_optional<T>::value) return type_name<typename T::value_type>() + " | null";
  else if constexpr (detail::is_vector<T>::value) return "list[" + type_name<typename T::value_type>() + "]";
  else if constexpr (Described<T>) return "mapping";
  else if constexpr (detail::HasTraits<T>) return value_traits<T>::name();
  else if constexpr (ConfigEnum<T>) {
    if constexpr (detail::HasEnumValues<T>) {
      std::string out;
      for (T e : enum_values(std::type_identity<T>{})) out += (out.empty() ? "" : " \\| ") + std::string(to_string(e));
      return out;
    } else {
      return "enum";
    }
  } else {
    static_assert(sizeof(T) == 0, "verl::config: unsupported member type; specialise verl::config::value_traits<T>");
  }
}

template <class T>
[[nodiscard]] Json encode(const T& value);

namespace detail {
struct EncodeVisitor {
  Json& out;
  template <class M>
  void operator()(std::string_view key, const M& member, std::string_view, Interpolation = {}) {
    out[std::string(key)] = encode(member);
  }
  void ignore(std::string_view, std::string_view) {}
};
}  // namespace detail

//! The tree of `value` (described structs become mappings in declaration order).
template <class T>
[[nodiscard]] Json encode(const T& value) {
  if constexpr (std::is_same_v<T, bool> || detail::Integer<T> || std::is_floating_point_v<T> ||
                std::is_same_v<T, std::string> || std::is_same_v<T, Json>) {
    return Json(value);
  } else if constexpr (detail::is_optional<T>::value) {
    return value ? encode(*value) : Json(nullptr);
  } else if constexpr (detail::is_vector<T>::value) {
    Json out = Json::array();
    for (const auto& x : value) out.push_back(encode(x));
    return out;
  } else if constexpr (Described<T>) {
    Json out = Json::object();
    T copy = value;  // describe() binds non-const references
    detail::EncodeVisitor v{out};
    copy.describe(v);
    return out;
  } else if constexpr (detail::HasTraits<T>) {
    return value_traits<T>::encode(value);
  } else if constexpr (ConfigEnum<T>) {
    return std::string(to_string(value));
  } else {
    static_assert(sizeof(T) == 0, "verl::config: unsupported member type; specialise verl::config::value_traits<T>");
  }
}

//! Block YAML of a described config (the effective configuration a trainer prints and saves).
template <Described T>
[[nodiscard]] std::string to_yaml(const T& config) {
  return to_yaml(encode(config));
}

namespace detail {

//! Like EncodeVisitor, but fields declared with interpolate(...) hold their expression: the tree a file is
//! merged onto.
struct DefaultsVisitor {
  Json& out;
  template <class M>
  void operator()(std::string_view key, const M& member, std::string_view, Interpolation interp = {}) {
    if (!interp.expression.empty()) {
      out[std::string(key)] = std::string(interp.expression);
    } else if constexpr (Described<M>) {
      Json child = Json::object();
      M copy = member;
      DefaultsVisitor v{child};
      copy.describe(v);
      out[std::string(key)] = std::move(child);
    } else {
      out[std::string(key)] = encode(member);
    }
  }
  void ignore(std::string_view, std::string_view) {}
};

//! Every key path of a described type (fields, sections and accepted-and-ignored keys).
struct KeyCollector {
  std::string prefix;
  std::vector<std::string>& out;
  template <class M>
  void operator()(std::string_view key, M& member, std::string_view, Interpolation = {}) {
    const std::string path = join_path(prefix, key);
    out.push_back(path);
    if constexpr (Described<M>) {
      KeyCollector v{path, out};
      member.describe(v);
    }
  }
  void ignore(std::string_view key, std::string_view) { out.push_back(join_path(prefix, key)); }
};

//! The keys one struct declares (for the sibling did-you-mean and the unknown-key check).
struct LocalKeys {
  std::vector<std::string> keys;
  std::set<std::string> ignored;
  template <class M>
  void operator()(std::string_view key, M&, std::string_view, Interpolation = {}) {
    keys.emplace_back(key);
  }
  void ignore(std::string_view key, std::string_view) {
    keys.emplace_back(key);
    ignored.emplace(key);
  }
};

[[nodiscard]] inline std::size_t levenshtein(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t up = row[j];
      const bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) == std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

[[nodiscard]] inline std::string parent_path(const std::string& path) {
  const auto cut = path.find_last_of(".[");
  return cut == std::string::npos ? std::string() : path.substr(0, cut);
}
[[nodiscard]] inline std::string leaf_of(const std::string& path) {
  const auto cut = path.find_last_of('.');
  return cut == std::string::npos ? path : path.substr(cut + 1);
}

}  // namespace detail

// -------------------------------------------------------------------------------------------------------------
// Sources: where each value came from

//! `path -> origin` ("file:line", "command-line override `a=1`"); lookups walk up to the nearest ancestor.
struct Sources {
  std::map<std::string, std::string> origin;

  [[nodiscard]] std::string where(const std::string& path) const {
    std::string p = path;
    while (true) {
      if (auto it = origin.find(p); it != origin.end()) return it->second;
      if (p.empty()) return "default";
      p = detail::parent_path(p);
    }
  }
  //! Records every key position of a parsed document.
  void add(const YamlDocument& doc) {
    for (const auto& [path, mark] : doc.marks)
      if (!path.empty()) origin[path] = doc.file + ":" + std::to_string(mark.line);
  }
  //! `path` (and everything under it) now comes from `what`.
  void replace(const std::string& path, const std::string& what) {
    for (auto it = origin.lower_bound(path); it != origin.end() && it->first.compare(0, path.size(), path) == 0;) {
      const char next = it->first.size() > path.size() ? it->first[path.size()] : '\0';
      if (next == '\0' || next == '.' || next == '[') it = origin.erase(it);
      else ++it;
    }
    origin[path] = what;
  }
};

// -------------------------------------------------------------------------------------------------------------
// Tree operations: merge, overrides, interpolation

//! Merges `over` onto `base` as OmegaConf.merge does: mappings merge key by key, anything else replaces.
inline void merge_into(Json& base, const Json& over) {
  if (base.is_object() && over.is_object()) {
    for (const auto& [k, v] : over.items()) {
      if (base.contains(k)) merge_into(base[k], v);
      else base[k] = v;
    }
  } else {
    base = over;
  }
}

//! Applies one `key.path=value` override to `tree` (creating missing mappings on the way; the unknown-key
//! check later names them). The value is parsed as a YAML scalar or flow collection. `+key`, `++key`, `~key`
//! (Hydra's add/force/delete) are rejected with a message.
inline void apply_override(Json& tree, Sources& sources, std::string_view arg) {
  const std::string what = "command-line override `" + std::string(arg) + "`";
  const auto eq = arg.find('=');
  verl::detail::check<ConfigError>(eq != std::string_view::npos, "verl::config: ", what,
                                   ": expected `key.path=value`");
  const std::string key(arg.substr(0, eq));
  verl::detail::check<ConfigError>(!key.empty() && key[0] != '+' && key[0] != '~', "verl::config: ", what,
                                   ": Hydra's `+key`, `++key` and `~key` forms are not supported; every key already "
                                   "exists in the typed configuration, write `key=value`");
  for (std::size_t i = 0, start = 0; i <= key.size(); ++i) {
    if (i == key.size() || key[i] == '.') {
      verl::detail::check<ConfigError>(i > start, "verl::config: ", what, ": empty component in the key `", key, "`");
      start = i + 1;
    }
  }
  Json value = parse_yaml_value(arg.substr(eq + 1), what);
  Json* node = &tree;
  std::string path;
  std::size_t start = 0;
  while (true) {
    const auto dot = key.find('.', start);
    const std::string part = key.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!node->is_object()) {
      if (node->is_null()) *node = Json::object();
      else
        throw ConfigError(verl::detail::concat_message("verl::config: ", what, ": cannot set `", key, "`: `", path, "` is ",
                                                       DecodeContext::describe_value(*node), ", not a mapping"));
    }
    path = detail::join_path(path, part);
    if (dot == std::string::npos) {
      (*node)[part] = std::move(value);
      break;
    }
    node = &(*node)[part];
    start = dot + 1;
  }
  sources.replace(key, what);
}

//! Resolves OmegaConf interpolations lazily against a tree (memoised, with cycle detection).
class Resolver {
 public:
  Resolver(const Json& root, const Sources& sources) : root_(root), sources_(sources) {}

  //! `node` (found at `path`) with every interpolation inside it resolved.
  Json resolve_deep(const Json& node, const std::string& path) {
    if (node.is_string()) {
      const auto& s = node.get_ref<const std::string&>();
      if (s.find("${") == std::string::npos) return node;
      return resolve_string(s, path);
    }
    if (node.is_object()) {
      Json out = Json::object();
      for (const auto& [k, v] : node.items()) out[k] = resolve_deep(v, detail::join_path(path, k));
      return out;
    }
    if (node.is_array()) {
      Json out = Json::array();
      for (std::size_t i = 0; i < node.size(); ++i) out.push_back(resolve_deep(node[i], path + "[" + std::to_string(i) + "]"));
      return out;
    }
    return node;
  }

  //! The node at a dotted absolute path, or nullptr.
  [[nodiscard]] const Json* lookup(const std::string& path) const {
    const Json* node = &root_;
    if (path.empty()) return node;
    std::size_t start = 0;
    while (true) {
      const auto dot = path.find('.', start);
      const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (node->is_object()) {
        auto it = node->find(part);
        if (it == node->end()) return nullptr;
        node = &*it;
      } else if (node->is_array() && !part.empty() && detail::all_of(part, detail::is_dec)) {
        const auto i = std::stoull(part);
        if (i >= node->size()) return nullptr;
        node = &(*node)[i];
      } else {
        return nullptr;
      }
      if (dot == std::string::npos) return node;
      start = dot + 1;
    }
  }

 private:
  const Json& root_;
  const Sources& sources_;
  std::map<std::string, Json> memo_;
  std::set<std::string> active_;

  [[noreturn]] void fail(const std::string& path, const std::string& text, std::string_view what) const {
    throw ConfigError(verl::detail::concat_message("verl::config: `", path, "` (", sources_.where(path),
                                                   "): interpolation `", text, "`: ", what));
  }

  //! Splits `a,b,c` at top-level commas (not inside `${}`, brackets or quotes).
  static std::vector<std::string> split_args(std::string_view s) {
    std::vector<std::string> out;
    int depth = 0;
    char quote = 0;
    std::size_t start = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      if (quote) {
        if (c == quote) quote = 0;
      } else if (c == '"' || c == '\'') {
        quote = c;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        --depth;
      } else if (c == ',' && depth == 0) {
        out.emplace_back(s.substr(start, i - start));
        start = i + 1;
      }
    }
    out.emplace_back(s.substr(start));
    for (auto& a : out) a = std::string(detail::trim_blanks(a));
    return out;
  }

  //! Absolute path of a (possibly relative) key used at `path`: `.x` is a sibling, `..x` a sibling of the parent.
  static std::string absolute(const std::string& key, const std::string& path) {
    if (key.empty() || key[0] != '.') return key;
    std::size_t dots = 0;
    while (dots < key.size() && key[dots] == '.') ++dots;
    std::string base = detail::parent_path(path);
    for (std::size_t i = 1; i < dots; ++i) base = detail::parent_path(base);
    return detail::join_path(base, key.substr(dots));
  }

  static bool is_missing(const Json* n) { return n == nullptr || (n->is_string() && n->get_ref<const std::string&>() == "???"); }

  Json evaluate(const std::string& expr, const std::string& path, const std::string& text) {
    auto value_at = [&](const std::string& target) -> Json {
      const Json* n = lookup(target);
      return resolve_deep(*n, target);
    };
    const auto colon = expr.find(':');
    if (colon != std::string::npos) {
      const std::string resolver = expr.substr(0, colon);
      const auto args = split_args(std::string_view(expr).substr(colon + 1));
      if (resolver == "oc.select") {
        const std::string target = absolute(args[0], path);
        if (!is_missing(lookup(target))) return value_at(target);
        if (args.size() < 2) return nullptr;
        std::string def = args[1];
        for (std::size_t i = 2; i < args.size(); ++i) def += "," + args[i];
        return resolve_deep(parse_yaml_value(def, "default of `" + text + "`"), path);
      }
      if (resolver == "oc.env") {
        if (const char* env = std::getenv(args[0].c_str())) return std::string(env);
        if (args.size() >= 2) return resolve_deep(parse_yaml_value(args[1], "default of `" + text + "`"), path);
        fail(path, text, "environment variable `" + args[0] + "` is not set and no default is given");
      }
      fail(path, text, "unsupported resolver `" + resolver + "` (supported: oc.select, oc.env, plain key paths)");
    }
    const std::string target = absolute(expr, path);
    if (lookup(target) == nullptr) fail(path, text, "key `" + target + "` not found");
    if (is_missing(lookup(target))) fail(path, text, "key `" + target + "` is a mandatory value (`???`) that is not set");
    return value_at(target);
  }

  //! Python's str() of a scalar, as OmegaConf uses when it splices a value into a string.
  static std::string splice_text(const Json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_null()) return "None";
    if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isnan(d)) return "nan";
      if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
      return detail::format_float(d);
    }
    return v.dump();
  }

  Json resolve_string(const std::string& s, const std::string& path) {
    if (auto it = memo_.find(path); it != memo_.end()) return it->second;
    if (active_.count(path)) fail(path, s, "the interpolation refers back to itself (a cycle)");
    active_.insert(path);
    std::string out;
    std::optional<Json> whole;
    std::size_t pieces = 0;
    for (std::size_t i = 0; i < s.size();) {
      if (s.compare(i, 3, "\\${") == 0) {
        out += "${";
        i += 3;
        ++pieces;
        continue;
      }
      if (s.compare(i, 2, "${") == 0) {
        std::size_t depth = 0, j = i;
        for (; j < s.size(); ++j) {
          if (s[j] == '{') ++depth;
          else if (s[j] == '}' && --depth == 0) break;
        }
        if (j >= s.size()) fail(path, s, "unterminated `${`: expected `}`");
        const std::string expr = std::string(detail::trim_blanks(std::string_view(s).substr(i + 2, j - i - 2)));
        Json v = evaluate(expr, path, s.substr(i, j - i + 1));
        if (i == 0 && j + 1 == s.size()) whole = v;
        if (!v.is_primitive() && !(i == 0 && j + 1 == s.size()))
          fail(path, s, "a mapping or sequence cannot be spliced into a string");
        if (!whole) out += splice_text(v);
        i = j + 1;
        ++pieces;
        continue;
      }
      out += s[i++];
    }
    active_.erase(path);
    Json result = whole ? *whole : Json(out);
    memo_[path] = result;
    return result;
  }
};

// -------------------------------------------------------------------------------------------------------------
// Reading a tree into a described struct

namespace detail {

class Reader;

template <class T>
struct DecodeVisitor {
  Reader& reader;
  const Json& node;
  std::string path;
  template <class M>
  void operator()(std::string_view key, M& member, std::string_view, Interpolation = {});
  void ignore(std::string_view, std::string_view) {}
};

class Reader {
 public:
  Reader(const Json& root, const Sources& sources, std::vector<std::string> all_keys, bool validate)
      : root_(root), sources_(sources), resolver_(root, sources), all_keys_(std::move(all_keys)), validate_(validate) {}

  [[nodiscard]] DecodeContext context(const std::string& path) const { return {path, sources_.where(path)}; }

  template <class T>
  void decode(const Json& raw, T& out, const std::string& path) {
    const auto cx = context(path);
    if (raw.is_string() && raw.get_ref<const std::string&>() == "???")
      cx.fail("is a mandatory value (`???`) that is not set; set it in the file or with `" + path + "=...`");
    if constexpr (Described<T>) {
      const Json node = (raw.is_string()) ? resolver_.resolve_deep(raw, path) : raw;
      if (!node.is_null()) {
        if (!node.is_object()) cx.type_error("a mapping (section `" + path + "`)", node);
        check_unknown_keys<T>(node, out, path);
        DecodeVisitor<T> v{*this, node, path};
        out.describe(v);
      }
      if constexpr (HasPostInit<T>) out.post_init();
      if (validate_) run_validate(out, path);
    } else {
      const Json node = resolver_.resolve_deep(raw, path);
      decode_value(node, out, path);
    }
  }

 private:
  const Json& root_;
  const Sources& sources_;
  Resolver resolver_;
  std::vector<std::string> all_keys_;
  bool validate_;

  template <class T>
  void decode_value(const Json& node, T& out, const std::string& path) {
    const auto cx = context(path);
    if constexpr (std::is_same_v<T, bool>) {
      if (!node.is_boolean()) cx.type_error("a boolean (true or false)", node);
      out = node.get<bool>();
    } else if constexpr (Integer<T>) {
      bool ok = false;
      if (node.is_number_unsigned()) {
        const auto v = node.get<std::uint64_t>();
        ok = v <= static_cast<std::uint64_t>(std::numeric_limits<T>::max());
        if (ok) out = static_cast<T>(v);
      } else if (node.is_number_integer()) {
        const auto v = node.get<std::int64_t>();
        if constexpr (std::is_signed_v<T>) ok = v >= std::numeric_limits<T>::min() && v <= std::numeric_limits<T>::max();
        else ok = v >= 0 && static_cast<std::uint64_t>(v) <= std::numeric_limits<T>::max();
        if (ok) out = static_cast<T>(v);
      } else {
        cx.type_error("an integer", node);
      }
      if (!ok)
        cx.fail(verl::detail::concat_message("integer ", node.dump(), " is out of range (expected ",
                                             +std::numeric_limits<T>::min(), " .. ", +std::numeric_limits<T>::max(), ")"));
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!node.is_number()) cx.type_error("a number", node);
      out = node.get<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!node.is_string()) cx.type_error("a string", node);
      out = node.get<std::string>();
    } else if constexpr (std::is_same_v<T, Json>) {
      out = node;
    } else if constexpr (is_optional<T>::value) {
      if (node.is_null()) {
        out.reset();
      } else {
        typename T::value_type v{};
        if (out) v = *out;
        decode_value(node, v, path);
        out = std::move(v);
      }
    } else if constexpr (is_vector<T>::value) {
      if (!node.is_array()) cx.type_error("a sequence of " + type_name<typename T::value_type>(), node);
      T result;
      for (std::size_t i = 0; i < node.size(); ++i) {
        typename T::value_type v{};
        const std::string item = path + "[" + std::to_string(i) + "]";
        if constexpr (Described<typename T::value_type>) decode(node[i], v, item);
        else decode_value(node[i], v, item);
        result.push_back(std::move(v));
      }
      out = std::move(result);
    } else if constexpr (Described<T>) {
      decode(node, out, path);
    } else if constexpr (HasTraits<T>) {
      value_traits<T>::decode(node, out, cx);
    } else if constexpr (ConfigEnum<T>) {
      if (!node.is_string()) cx.type_error("one of " + type_name<T>(), node);
      try {
        out = parse(node.get_ref<const std::string&>(), std::type_identity<T>{});
      } catch (const ConfigError& e) {
        cx.fail(e.what());
      }
    } else {
      static_assert(sizeof(T) == 0, "verl::config: unsupported member type; specialise verl::config::value_traits<T>");
    }
  }

  template <class T>
  void run_validate(const T& out, const std::string& path) {
    if constexpr (HasValidate<T>) {
      try {
        out.validate();
      } catch (const InvalidValue& e) {
        const std::string key = join_path(path, e.key());
        throw ConfigError(verl::detail::concat_message("verl::config: `", key, "` (", sources_.where(key), "): ", e.what()));
      } catch (const ConfigError& e) {
        const std::string section = path.empty() ? std::string("the configuration") : "section `" + path + "`";
        throw ConfigError(verl::detail::concat_message("verl::config: ", section, " (", sources_.where(path), "): ", e.what()));
      }
    }
  }

  template <class T>
  void check_unknown_keys(const Json& node, T& out, const std::string& path) {
    LocalKeys local;
    out.describe(local);
    for (const auto& [key, value] : node.items()) {
      if (key == "_target_") continue;  // Hydra's instantiation target, present in every verl section
      if (std::find(local.keys.begin(), local.keys.end(), key) != local.keys.end()) continue;
      unknown_key(join_path(path, key), key, local.keys);
    }
  }

  [[noreturn]] void unknown_key(const std::string& full, const std::string& key, const std::vector<std::string>& siblings) {
    const std::size_t limit = std::max<std::size_t>(1, std::min<std::size_t>(3, key.size() / 3));
    std::vector<std::pair<std::size_t, std::string>> near;
    for (const auto& s : siblings) {
      const auto d = levenshtein(key, s);
      // Close in edit distance, or one name a prefix of the other (`project` -> `project_name`).
      const bool prefix = key.size() >= 3 && (s.rfind(key, 0) == 0 || key.rfind(s, 0) == 0);
      if (d <= limit || prefix) near.emplace_back(d, join_path(parent_path(full), s));
    }
    std::stable_sort(near.begin(), near.end());
    std::vector<std::string> suggestions;
    for (const auto& [d, s] : near) suggestions.push_back(s);
    for (const auto& k : all_keys_)  // the same leaf name in another section
      if (leaf_of(k) == key && k != full && std::find(suggestions.begin(), suggestions.end(), k) == suggestions.end())
        suggestions.push_back(k);
    std::string msg = "verl::config: unknown key `" + full + "` (" + sources_.where(full) + ")";
    if (full == "defaults")
      throw ConfigError(msg + "; Hydra `defaults` lists (config composition) are not supported: use a flat file (like "
                              "verl's _generated_ppo_trainer.yaml), or pass several files to verl::config::load, merged in order");
    if (!suggestions.empty()) {
      msg += "; did you mean ";
      for (std::size_t i = 0; i < suggestions.size() && i < 4; ++i)
        msg += (i == 0 ? "" : (i + 1 == std::min<std::size_t>(suggestions.size(), 4) ? " or " : ", ")) + ("`" + suggestions[i] + "`");
      msg += "?";
    } else {
      const std::string section = parent_path(full);
      msg += "; the keys of " + (section.empty() ? std::string("the top level") : "`" + section + "`") + " are: ";
      for (std::size_t i = 0; i < siblings.size(); ++i) msg += (i ? ", " : "") + siblings[i];
    }
    throw ConfigError(msg);
  }

  template <class T>
  friend struct DecodeVisitor;
};

template <class T>
template <class M>
void DecodeVisitor<T>::operator()(std::string_view key, M& member, std::string_view, Interpolation) {
  auto it = node.find(std::string(key));
  if (it == node.end()) return;
  reader.decode(*it, member, join_path(path, key));
}

}  // namespace detail

//! Options of load / load_config.
struct LoadOptions {
  bool validate = true;  //!< run the validate() hooks (false: read and type-check only)
};

//! A loaded configuration: the typed struct and its effective YAML (all interpolations resolved).
template <class T>
struct Loaded {
  T config;
  std::string yaml;
};

//! The tree of T's defaults, with interpolation defaults as their expressions.
template <Described T>
[[nodiscard]] Json defaults_tree() {
  Json out = Json::object();
  T t{};
  detail::DefaultsVisitor v{out};
  t.describe(v);
  return out;
}

//! Every key path T declares (dotted), in declaration order.
template <Described T>
[[nodiscard]] std::vector<std::string> key_paths() {
  std::vector<std::string> out;
  T t{};
  detail::KeyCollector v{"", out};
  t.describe(v);
  return out;
}

//! Reads T from `documents` (merged in order onto T's defaults) and `overrides` (`a.b=value`, applied after).
//! \throws verl::ConfigError naming the key, where it was set, and what was expected.
template <Described T>
[[nodiscard]] Loaded<T> load(std::span<const YamlDocument> documents, const std::vector<std::string>& overrides = {},
                             LoadOptions options = {}) {
  Json tree = defaults_tree<T>();
  Sources sources;
  for (const auto& doc : documents) {
    if (doc.root.is_null()) continue;  // an empty file
    verl::detail::check<ConfigError>(doc.root.is_object(), "verl::config: ", doc.file,
                                     ": expected a mapping of sections at the top level, found ",
                                     DecodeContext::describe_value(doc.root));
    merge_into(tree, doc.root);
    sources.add(doc);
  }
  for (const auto& o : overrides) apply_override(tree, sources, o);
  Loaded<T> out{};
  detail::Reader reader(tree, sources, key_paths<T>(), options.validate);
  reader.decode(tree, out.config, "");
  out.yaml = to_yaml(out.config);
  return out;
}

//! Reads T from YAML text (`name` in messages) and overrides.
template <Described T>
[[nodiscard]] Loaded<T> load_text(std::string_view yaml, std::string name, const std::vector<std::string>& overrides = {},
                                  LoadOptions options = {}) {
  const YamlDocument doc = parse_yaml(yaml, std::move(name));
  return load<T>(std::span<const YamlDocument>(&doc, 1), overrides, options);
}

//! Reads T from a YAML file and command-line overrides: what a trainer's main() calls.
template <Described T>
[[nodiscard]] Loaded<T> load_config(const std::filesystem::path& file, const std::vector<std::string>& overrides = {},
                                    LoadOptions options = {}) {
  const YamlDocument doc = parse_yaml_file(file);
  return load<T>(std::span<const YamlDocument>(&doc, 1), overrides, options);
}

//! T from its defaults and overrides only (no file).
template <Described T>
[[nodiscard]] Loaded<T> load_overrides(const std::vector<std::string>& overrides, LoadOptions options = {}) {
  return load<T>(std::span<const YamlDocument>(), overrides, options);
}

// -------------------------------------------------------------------------------------------------------------
// The Markdown reference

namespace detail {

[[nodiscard]] inline std::string md_cell(std::string s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

struct DocVisitor {
  std::string prefix;
  std::string& out;  // the current section's table rows
  std::vector<std::pair<std::string, std::string>>& ignored;  // path, why
  std::string& children;  // child sections, written after this one

  template <class M>
  void operator()(std::string_view key, M& member, std::string_view doc, Interpolation interp = {}) {
    const std::string path = join_path(prefix, key);
    if constexpr (Described<M>) {
      write_section(path, member, doc, children, ignored);
    } else {
      std::string def = interp.expression.empty() ? to_flow_yaml(encode(member)) : std::string(interp.expression);
      out += "| `" + path + "` | " + md_cell(type_name<M>()) + " | `" + md_cell(def) + "` | " + md_cell(std::string(doc)) + " |\n";
    }
  }
  void ignore(std::string_view key, std::string_view why) { ignored.emplace_back(join_path(prefix, key), std::string(why)); }

  template <class S>
  static void write_section(const std::string& path, S& s, std::string_view doc, std::string& dest,
                            std::vector<std::pair<std::string, std::string>>& ignored) {
    std::string rows, children;
    DocVisitor v{path, rows, ignored, children};
    s.describe(v);
    if (!rows.empty()) {
      dest += "\n## `" + (path.empty() ? std::string("(top level)") : path) + "`\n\n";
      if (!doc.empty()) dest += std::string(doc) + "\n\n";
      dest += "| key | type | default | description |\n|---|---|---|---|\n" + rows;
    }
    dest += children;
  }
};

}  // namespace detail

//! The Markdown reference of T: one table per section (key path, type, default, description), then the
//! keys that are accepted and ignored. `title` and `intro` head the page.
template <Described T>
[[nodiscard]] std::string reference_markdown(std::string_view title, std::string_view intro) {
  std::string out = "# " + std::string(title) + "\n\n" + std::string(intro) + "\n";
  std::vector<std::pair<std::string, std::string>> ignored;
  T t{};
  detail::DocVisitor::write_section("", t, "", out, ignored);
  if (!ignored.empty()) {
    out += "\n## Accepted and ignored\n\nThese keys of verl's configuration are read (so a verl YAML file loads) and have no "
           "effect in verl-cpp, with the reason. Their values are not type-checked.\n\n| key | why it is ignored |\n|---|---|\n";
    for (const auto& [path, why] : ignored) out += "| `" + path + "` | " + detail::md_cell(why) + " |\n";
  }
  return out;
}

}  // namespace verl::config
