#pragma once
//! \file
//! verl::models::TransformerConfig: the decoder-only transformer described by a Hugging Face config.json
//! (model_type "llama", "mistral", "qwen2", "qwen3"), parsed key by key with the defaults of transformers
//! 5.23.0's LlamaConfig, MistralConfig, Qwen2Config and Qwen3Config. A value that would change the math in a
//! way this library does not implement is rejected with verl::ConfigError naming the key and the value; keys
//! that do not affect the math (architectures, use_cache, initializer_range, ...) are accepted and listed in
//! `ignored_keys`. docs/models.md lists every key.

#include "verl/core/errors.hpp"

#include <c10/core/ScalarType.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace verl::models {

//! How the rotary inverse frequencies are derived (transformers' `rope_type`).
enum class RopeType {
  standard,  //!< "default": theta^(-2i/d)
  linear,    //!< "linear": default / factor (position interpolation)
  dynamic,   //!< "dynamic": NTK-aware base growth once positions pass max_position_embeddings
  llama3,    //!< "llama3": Llama 3.1 wavelength-dependent smoothing
};

//! The name transformers gives a RopeType.
[[nodiscard]] inline std::string_view rope_type_name(RopeType t) {
  switch (t) {
    case RopeType::standard: return "default";
    case RopeType::linear: return "linear";
    case RopeType::dynamic: return "dynamic";
    case RopeType::llama3: return "llama3";
  }
  return "default";
}

//! RoPE parameters (transformers 5's `rope_parameters` dict, or the older `rope_theta` + `rope_scaling`).
struct RopeConfig {
  RopeType type = RopeType::standard;
  double theta = 10000.0;                          //!< rope_theta
  double factor = 1.0;                             //!< linear, dynamic, llama3
  double low_freq_factor = 1.0;                    //!< llama3
  double high_freq_factor = 4.0;                   //!< llama3
  std::int64_t original_max_position_embeddings = 0;  //!< llama3 (defaults to max_position_embeddings)
};

//! A Llama / Mistral / Qwen2 / Qwen3 decoder-only transformer's hyper-parameters.
struct TransformerConfig {
  std::string model_type = "llama";  //!< "llama", "mistral", "qwen2" or "qwen3"
  std::int64_t vocab_size = 32000;
  std::int64_t hidden_size = 4096;
  std::int64_t intermediate_size = 11008;
  std::int64_t num_hidden_layers = 32;
  std::int64_t num_attention_heads = 32;
  std::int64_t num_key_value_heads = 32;
  std::int64_t head_dim = 128;
  std::int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  //!< biases on q/k/v/o (llama, qwen3 `attention_bias`)
  bool qkv_bias = false;        //!< biases on q/k/v only (qwen2, always)
  bool mlp_bias = false;        //!< biases on gate/up/down (llama `mlp_bias`)
  bool qk_norm = false;         //!< per-head RMSNorm of q and k before RoPE (qwen3)
  //! Per layer: 0 for full causal attention, else the sliding window w (a query at column i sees the key
  //! columns j with i - w < j <= i, transformers' `sliding_window_overlay`).
  std::vector<std::int64_t> sliding_windows;
  RopeConfig rope;
  at::ScalarType dtype = at::kFloat;  //!< parameter dtype (`dtype`, formerly `torch_dtype`)
  std::optional<std::int64_t> bos_token_id;
  std::optional<std::int64_t> pad_token_id;
  std::vector<std::int64_t> eos_token_ids;  //!< `eos_token_id` (an int or a list)
  //! The config.json this was parsed from (or null), kept so that saving preserves keys we do not read.
  nlohmann::json source = nullptr;
  //! Keys present in the JSON that do not affect the math and were not read.
  std::vector<std::string> ignored_keys;

  //! Heads of queries per key/value head.
  [[nodiscard]] std::int64_t num_key_value_groups() const { return num_attention_heads / num_key_value_heads; }

  //! Throws verl::ConfigError naming the first inconsistent field.
  void validate() const;

  //! Parses a config.json object; `where` names it in messages (e.g. the file path).
  [[nodiscard]] static TransformerConfig from_json(const nlohmann::json& j, std::string_view where = "config.json");

  //! Reads and parses `path` (a config.json file, or a directory holding one).
  [[nodiscard]] static TransformerConfig load(const std::filesystem::path& path);

  //! The config.json that makes transformers 5.23 build this same model (starting from `source`, so keys
  //! we do not read survive a load/save round trip).
  [[nodiscard]] nlohmann::json to_json() const;

  //! transformers' class name for the causal LM ("LlamaForCausalLM", ...).
  [[nodiscard]] std::string causal_lm_class() const;
};

namespace detail {

//! The dtype named by a config's `dtype` / `torch_dtype` string.
[[nodiscard]] inline at::ScalarType parse_dtype(const nlohmann::json& v, std::string_view where, std::string_view key) {
  if (v.is_null()) return at::kFloat;
  verl::detail::check<ConfigError>(v.is_string(), where, ": `", key, "` is ", v.dump(),
                                   ", expected one of \"float32\", \"bfloat16\", \"float16\"");
  const auto s = v.get<std::string>();
  if (s == "float32" || s == "float" || s == "auto") return at::kFloat;
  if (s == "bfloat16") return at::kBFloat16;
  if (s == "float16" || s == "half") return at::kHalf;
  throw ConfigError(verl::detail::concat_message(where, ": `", key, "` is \"", s,
                                                 "\", expected one of \"float32\", \"bfloat16\", \"float16\""));
}

//! The transformers name of a floating dtype.
[[nodiscard]] inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default:
      throw ConfigError(verl::detail::concat_message("verl::models: dtype ", c10::toString(t),
                                                     " is not a parameter dtype, expected float32, bfloat16 or float16"));
  }
}

//! Reads config keys, recording which were consumed.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& j, std::string_view where) : j_(j), where_(where) {}

  [[nodiscard]] bool has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }
  [[nodiscard]] const nlohmann::json& raw(const std::string& key) {
    used_.push_back(key);
    return j_.at(key);
  }
  void mark(const std::string& key) { used_.push_back(key); }

  [[nodiscard]] std::int64_t integer(const std::string& key, std::int64_t fallback, std::int64_t min_value = 1) {
    used_.push_back(key);
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    verl::detail::check<ConfigError>(v.is_number_integer(), where_, ": `", key, "` is ", v.dump(),
                                     ", expected an integer >= ", min_value);
    const auto x = v.get<std::int64_t>();
    verl::detail::check<ConfigError>(x >= min_value, where_, ": `", key, "` is ", x, ", expected an integer >= ",
                                     min_value);
    return x;
  }
  [[nodiscard]] double number(const std::string& key, double fallback) {
    used_.push_back(key);
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    verl::detail::check<ConfigError>(v.is_number(), where_, ": `", key, "` is ", v.dump(), ", expected a number");
    return v.get<double>();
  }
  [[nodiscard]] bool boolean(const std::string& key, bool fallback) {
    used_.push_back(key);
    if (!has(key)) return fallback;
    const auto& v = j_.at(key);
    verl::detail::check<ConfigError>(v.is_boolean(), where_, ": `", key, "` is ", v.dump(), ", expected true or false");
    return v.get<bool>();
  }
  //! Rejects `key` unless absent, null or equal to `allowed` (a JSON value); `why` explains.
  void only(const std::string& key, const nlohmann::json& allowed, std::string_view why) {
    used_.push_back(key);
    if (!has(key)) return;
    const auto& v = j_.at(key);
    const bool same = (v.is_number() && allowed.is_number()) ? v.get<double>() == allowed.get<double>() : v == allowed;
    verl::detail::check<ConfigError>(same, where_, ": `", key, "` is ", v.dump(), ", expected ", allowed.dump(),
                                     " or absent (", why, ")");
  }
  //! Rejects `key` unless absent or null.
  void absent(const std::string& key, std::string_view why) {
    used_.push_back(key);
    verl::detail::check<ConfigError>(!has(key), where_, ": `", key, "` is ", has(key) ? j_.at(key).dump() : "",
                                     ", which is not supported (", why, "); expected it absent or null");
  }
  [[nodiscard]] std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (const auto& [k, v] : j_.items()) {
      if (std::find(used_.begin(), used_.end(), k) == used_.end()) out.push_back(k);
    }
    return out;
  }
  [[nodiscard]] std::string_view where() const { return where_; }

 private:
  const nlohmann::json& j_;
  std::string where_;
  std::vector<std::string> used_;
};

//! Parses the RoPE keys as transformers 5.23's RotaryEmbeddingConfigMixin does: `rope_scaling` (older files)
//! takes precedence over `rope_parameters`; `rope_theta` inside the dict over the top-level key; `type` is
//! the older spelling of `rope_type`.
inline RopeConfig parse_rope(ConfigReader& r, const nlohmann::json& j, std::int64_t max_position_embeddings) {
  const auto where = r.where();
  nlohmann::json params = nlohmann::json::object();
  std::string dict_key = "rope_parameters";
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    r.mark(key);
    if (r.has(key) && params.empty()) {
      const auto& v = j.at(key);
      verl::detail::check<ConfigError>(v.is_object(), where, ": `", key, "` is ", v.dump(),
                                       ", expected an object such as {\"rope_type\": \"llama3\", \"factor\": 8.0, ...}");
      if (!v.empty()) {
        params = v;
        dict_key = key;
      }
    }
  }
  const auto field = [&](const std::string& k) { return verl::detail::concat_message(dict_key, ".", k); };
  RopeConfig rope;
  rope.theta = r.number("rope_theta", 10000.0);
  if (params.contains("rope_theta") && !params["rope_theta"].is_null()) {
    verl::detail::check<ConfigError>(params["rope_theta"].is_number(), where, ": `", field("rope_theta"), "` is ",
                                     params["rope_theta"].dump(), ", expected a number");
    rope.theta = params["rope_theta"].get<double>();
  }
  verl::detail::check<ConfigError>(rope.theta > 0.0, where, ": `rope_theta` is ", rope.theta, ", expected a value > 0");
  // partial_rotary_factor < 1 would rotate only part of each head; none of these architectures does that.
  for (const nlohmann::json* src : std::initializer_list<const nlohmann::json*>{&j, &params}) {
    if (src->contains("partial_rotary_factor") && !(*src)["partial_rotary_factor"].is_null()) {
      const auto& v = (*src)["partial_rotary_factor"];
      verl::detail::check<ConfigError>(v.is_number() && v.get<double>() == 1.0, where, ": `",
                                       src == &j ? std::string("partial_rotary_factor") : field("partial_rotary_factor"),
                                       "` is ", v.dump(), ", expected 1.0 (partial rotary embeddings are not supported)");
    }
  }
  r.mark("partial_rotary_factor");
  std::string type = "default";
  const char* type_key = params.contains("rope_type") ? "rope_type" : "type";
  if (params.contains(type_key) && !params[type_key].is_null()) {
    verl::detail::check<ConfigError>(params[type_key].is_string(), where, ": `", field(type_key), "` is ",
                                     params[type_key].dump(), ", expected a string");
    type = params[type_key].get<std::string>();
  }
  const auto factor = [&]() {
    verl::detail::check<ConfigError>(params.contains("factor") && params["factor"].is_number(), where, ": `",
                                     field("factor"), "` is ", params.contains("factor") ? params["factor"].dump() : "missing",
                                     ", expected a number >= 1 for rope_type \"", type, "\"");
    const double f = params["factor"].get<double>();
    verl::detail::check<ConfigError>(f >= 1.0, where, ": `", field("factor"), "` is ", f,
                                     ", expected a number >= 1 for rope_type \"", type, "\"");
    return f;
  };
  if (type == "default") {
    rope.type = RopeType::standard;
  } else if (type == "linear") {
    rope.type = RopeType::linear;
    rope.factor = factor();
  } else if (type == "dynamic") {
    rope.type = RopeType::dynamic;
    rope.factor = factor();
  } else if (type == "llama3") {
    rope.type = RopeType::llama3;
    rope.factor = factor();
    for (const char* k : {"low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
      verl::detail::check<ConfigError>(params.contains(k) && params[k].is_number(), where, ": `", field(k), "` is ",
                                       params.contains(k) ? params[k].dump() : "missing",
                                       ", expected a number for rope_type \"llama3\"");
    }
    rope.low_freq_factor = params["low_freq_factor"].get<double>();
    rope.high_freq_factor = params["high_freq_factor"].get<double>();
    verl::detail::check<ConfigError>(rope.high_freq_factor > rope.low_freq_factor, where, ": `",
                                     field("high_freq_factor"), "` is ", rope.high_freq_factor,
                                     ", expected a value greater than low_freq_factor = ", rope.low_freq_factor);
    const auto& o = params["original_max_position_embeddings"];
    verl::detail::check<ConfigError>(o.is_number_integer() && o.get<std::int64_t>() >= 1, where, ": `",
                                     field("original_max_position_embeddings"), "` is ", o.dump(),
                                     ", expected an integer >= 1");
    rope.original_max_position_embeddings = o.get<std::int64_t>();
  } else {
    throw ConfigError(verl::detail::concat_message(
        where, ": `", field(type_key), "` is \"", type,
        "\", expected one of \"default\", \"linear\", \"dynamic\", \"llama3\" (yarn, longrope and other RoPE "
        "scalings are not implemented)"));
  }
  if (rope.original_max_position_embeddings == 0) rope.original_max_position_embeddings = max_position_embeddings;
  return rope;
}

//! An `eos_token_id` that is an integer, a list of integers, or null.
inline std::vector<std::int64_t> parse_token_ids(const nlohmann::json& v, std::string_view where, std::string_view key) {
  std::vector<std::int64_t> out;
  if (v.is_null()) return out;
  const auto one = [&](const nlohmann::json& x) {
    verl::detail::check<ConfigError>(x.is_number_integer() && x.get<std::int64_t>() >= 0, where, ": `", key, "` is ",
                                     v.dump(), ", expected a token id >= 0 or a list of them");
    out.push_back(x.get<std::int64_t>());
  };
  if (v.is_array()) {
    for (const auto& x : v) one(x);
  } else {
    one(v);
  }
  return out;
}

}  // namespace detail

inline void TransformerConfig::validate() const {
  using verl::detail::check;
  constexpr std::string_view o = "verl::models::TransformerConfig";
  check<ConfigError>(model_type == "llama" || model_type == "mistral" || model_type == "qwen2" || model_type == "qwen3",
                     o, ": `model_type` is \"", model_type, "\", expected \"llama\", \"mistral\", \"qwen2\" or \"qwen3\"");
  for (auto [name, v] : {std::pair<const char*, std::int64_t>{"vocab_size", vocab_size},
                         {"hidden_size", hidden_size},
                         {"intermediate_size", intermediate_size},
                         {"num_hidden_layers", num_hidden_layers},
                         {"num_attention_heads", num_attention_heads},
                         {"num_key_value_heads", num_key_value_heads},
                         {"head_dim", head_dim},
                         {"max_position_embeddings", max_position_embeddings}}) {
    check<ConfigError>(v >= 1, o, ": `", name, "` is ", v, ", expected an integer >= 1");
  }
  check<ConfigError>(num_attention_heads % num_key_value_heads == 0, o, ": `num_attention_heads` (",
                     num_attention_heads, ") is not a multiple of `num_key_value_heads` (", num_key_value_heads, ")");
  check<ConfigError>(head_dim % 2 == 0, o, ": `head_dim` is ", head_dim, ", expected an even number (RoPE rotates pairs)");
  check<ConfigError>(rms_norm_eps > 0.0, o, ": `rms_norm_eps` is ", rms_norm_eps, ", expected a value > 0");
  check<ConfigError>(static_cast<std::int64_t>(sliding_windows.size()) == num_hidden_layers, o, ": `sliding_windows` has ",
                     sliding_windows.size(), " entries, expected one per layer (", num_hidden_layers, ")");
  for (std::size_t i = 0; i < sliding_windows.size(); ++i) {
    check<ConfigError>(sliding_windows[i] >= 0, o, ": `sliding_windows[", i, "]` is ", sliding_windows[i],
                       ", expected 0 (full attention) or a window >= 1");
  }
  check<ConfigError>(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf, o, ": `dtype` is ",
                     c10::toString(dtype), ", expected float32, bfloat16 or float16");
  check<ConfigError>(rope.theta > 0.0, o, ": `rope.theta` is ", rope.theta, ", expected a value > 0");
  check<ConfigError>(rope.factor >= 1.0, o, ": `rope.factor` is ", rope.factor, ", expected a value >= 1");
  if (pad_token_id) check<ConfigError>(*pad_token_id >= 0, o, ": `pad_token_id` is ", *pad_token_id, ", expected >= 0");
}

inline TransformerConfig TransformerConfig::from_json(const nlohmann::json& j, std::string_view where) {
  using verl::detail::check;
  check<ConfigError>(j.is_object(), where, ": expected a JSON object, got ", j.type_name());
  detail::ConfigReader r(j, where);
  TransformerConfig c;
  c.source = j;
  check<ConfigError>(r.has("model_type") && j.at("model_type").is_string(), where,
                     ": `model_type` is missing or not a string, expected \"llama\", \"mistral\", \"qwen2\" or \"qwen3\"");
  c.model_type = r.raw("model_type").get<std::string>();
  const auto& mt = c.model_type;
  check<ConfigError>(mt == "llama" || mt == "mistral" || mt == "qwen2" || mt == "qwen3", where, ": `model_type` is \"",
                     mt, "\", expected \"llama\", \"mistral\", \"qwen2\" or \"qwen3\"");
  const bool llama = mt == "llama", mistral = mt == "mistral", qwen2 = mt == "qwen2", qwen3 = mt == "qwen3";

  // Defaults are those of transformers 5.23's config classes, used when a published file omits a key.
  c.vocab_size = r.integer("vocab_size", llama || mistral ? 32000 : 151936);
  c.hidden_size = r.integer("hidden_size", 4096);
  c.intermediate_size = r.integer("intermediate_size", llama ? 11008 : mistral ? 14336 : 22016);
  c.num_hidden_layers = r.integer("num_hidden_layers", 32);
  c.num_attention_heads = r.integer("num_attention_heads", 32);
  // A missing key takes the class default (llama: num_attention_heads, mistral: 8, qwen: 32); null means
  // num_attention_heads (the classes' __post_init__).
  const std::int64_t kv_default = !j.contains("num_key_value_heads") ? (llama ? c.num_attention_heads : mistral ? 8 : 32)
                                                                     : c.num_attention_heads;
  c.num_key_value_heads = r.integer("num_key_value_heads", kv_default);
  c.head_dim = r.integer("head_dim", qwen3 ? 128 : c.hidden_size / c.num_attention_heads);
  if (!qwen3 && !r.has("head_dim")) {
    check<ConfigError>(c.hidden_size % c.num_attention_heads == 0, where, ": `hidden_size` (", c.hidden_size,
                       ") is not a multiple of `num_attention_heads` (", c.num_attention_heads,
                       ") and there is no `head_dim`");
  }
  c.max_position_embeddings = r.integer("max_position_embeddings", llama ? 2048 : mistral ? 131072 : 32768);
  c.rms_norm_eps = r.number("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  if (r.has("hidden_act")) {
    const auto& v = r.raw("hidden_act");
    check<ConfigError>(v == "silu", where, ": `hidden_act` is ", v.dump(),
                       ", expected \"silu\" (the SwiGLU MLP is the only one implemented)");
  } else {
    r.mark("hidden_act");
  }
  r.only("attention_dropout", 0.0, "attention dropout is not implemented");

  // Biases: llama and qwen3 read attention_bias (all four projections); qwen2 always has q/k/v biases;
  // mistral and qwen2 have none that a key can switch on (transformers ignores the key there).
  if (llama || qwen3) {
    c.attention_bias = r.boolean("attention_bias", false);
  } else {
    r.only("attention_bias", false, mt + " has no switchable attention biases; transformers ignores this key");
  }
  c.qkv_bias = qwen2;
  if (llama) {
    c.mlp_bias = r.boolean("mlp_bias", false);
  } else {
    r.only("mlp_bias", false, mt + " has no MLP biases; transformers ignores this key");
  }
  c.qk_norm = qwen3;
  // pretraining_tp only sliced Llama's matmuls in transformers 4 (the same sums); transformers 5 ignores it.
  if (llama) (void)r.integer("pretraining_tp", 1);

  // Sliding windows.
  c.sliding_windows.assign(static_cast<std::size_t>(c.num_hidden_layers), 0);
  // A missing `sliding_window` takes the class default 4096; null means no window.
  const auto window_or_default = [&]() -> std::int64_t {
    if (!j.contains("sliding_window")) return 4096;
    return r.has("sliding_window") ? r.integer("sliding_window", 0) : 0;
  };
  if (mistral) {
    c.sliding_windows.assign(c.sliding_windows.size(), window_or_default());
    r.mark("sliding_window");
    r.absent("layer_types", "Mistral applies one attention type to every layer; use model_type \"ministral\" for "
                            "alternating layers, which is not implemented");
    r.absent("use_sliding_window", "Mistral's window is set by `sliding_window` alone");
  } else if (qwen2 || qwen3) {
    const bool use = r.boolean("use_sliding_window", false);
    std::int64_t window = 0;
    if (use) window = window_or_default();
    r.mark("sliding_window");
    const auto max_window_layers = r.integer("max_window_layers", 28, 0);
    if (r.has("layer_types")) {
      const auto& lt = r.raw("layer_types");
      check<ConfigError>(lt.is_array() && static_cast<std::int64_t>(lt.size()) == c.num_hidden_layers, where,
                         ": `layer_types` is ", lt.dump(), ", expected a list of ", c.num_hidden_layers,
                         " entries \"full_attention\" or \"sliding_attention\"");
      for (std::size_t i = 0; i < lt.size(); ++i) {
        check<ConfigError>(lt[i] == "full_attention" || lt[i] == "sliding_attention", where, ": `layer_types[", i,
                           "]` is ", lt[i].dump(), ", expected \"full_attention\" or \"sliding_attention\"");
        if (lt[i] == "sliding_attention") {
          check<ConfigError>(window > 0, where, ": `layer_types[", i,
                             "]` is \"sliding_attention\" but there is no window (`use_sliding_window` is false or "
                             "`sliding_window` is null), expected a window when a layer slides");
          c.sliding_windows[i] = window;
        }
      }
    } else if (window > 0) {
      for (std::int64_t i = max_window_layers; i < c.num_hidden_layers; ++i) c.sliding_windows[i] = window;
    }
  } else {
    r.absent("sliding_window", "Llama has no sliding-window attention");
    r.absent("layer_types", "Llama applies full attention to every layer");
  }

  c.rope = detail::parse_rope(r, j, c.max_position_embeddings);

  // Parameter dtype: transformers 5 writes `dtype`, earlier versions `torch_dtype`.
  r.mark("dtype");
  r.mark("torch_dtype");
  if (r.has("dtype")) {
    c.dtype = detail::parse_dtype(j.at("dtype"), where, "dtype");
  } else if (r.has("torch_dtype")) {
    c.dtype = detail::parse_dtype(j.at("torch_dtype"), where, "torch_dtype");
  }
  r.absent("quantization_config", "quantized checkpoints are not supported");

  if (r.has("bos_token_id")) c.bos_token_id = r.integer("bos_token_id", 0, 0);
  r.mark("bos_token_id");
  if (r.has("pad_token_id")) c.pad_token_id = r.integer("pad_token_id", 0, 0);
  r.mark("pad_token_id");
  r.mark("eos_token_id");
  if (j.contains("eos_token_id")) c.eos_token_ids = detail::parse_token_ids(j.at("eos_token_id"), where, "eos_token_id");

  c.ignored_keys = r.unused();
  c.validate();
  return c;
}

inline TransformerConfig TransformerConfig::load(const std::filesystem::path& path) {
  const auto file = std::filesystem::is_directory(path) ? path / "config.json" : path;
  std::ifstream in(file);
  verl::detail::check<InputError>(static_cast<bool>(in), "verl::models::TransformerConfig::load: cannot open ",
                                  file.string(), ", expected a Hugging Face config.json");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(verl::detail::concat_message("verl::models::TransformerConfig::load: ", file.string(),
                                                  " is not valid JSON: ", e.what()));
  }
  return from_json(j, file.string());
}

inline std::string TransformerConfig::causal_lm_class() const {
  if (model_type == "llama") return "LlamaForCausalLM";
  if (model_type == "mistral") return "MistralForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  return "Qwen3ForCausalLM";
}

inline nlohmann::json TransformerConfig::to_json() const {
  validate();
  nlohmann::json j = source.is_object() ? source : nlohmann::json::object();
  const bool llama = model_type == "llama", mistral = model_type == "mistral";
  j["architectures"] = nlohmann::json::array({causal_lm_class()});
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["attention_dropout"] = 0.0;
  if (llama || model_type == "qwen3") j["attention_bias"] = attention_bias;
  if (llama) j["mlp_bias"] = mlp_bias;
  // RoPE in transformers 5's `rope_parameters`, plus `rope_theta`/`rope_scaling` for older readers.
  nlohmann::json rp = {{"rope_type", std::string(rope_type_name(rope.type))}, {"rope_theta", rope.theta}};
  if (rope.type != RopeType::standard) rp["factor"] = rope.factor;
  if (rope.type == RopeType::llama3) {
    rp["low_freq_factor"] = rope.low_freq_factor;
    rp["high_freq_factor"] = rope.high_freq_factor;
    rp["original_max_position_embeddings"] = rope.original_max_position_embeddings;
  }
  j.erase("partial_rotary_factor");
  j["rope_parameters"] = rp;
  j["rope_theta"] = rope.theta;
  j["rope_scaling"] = rope.type == RopeType::standard ? nlohmann::json(nullptr) : rp;
  // Sliding windows: Mistral has one window for all layers, Qwen a per-layer list.
  std::int64_t window = 0;
  bool any_full = false;
  for (auto w : sliding_windows) {
    if (w > 0) {
      verl::detail::check<ConfigError>(window == 0 || window == w, "verl::models::TransformerConfig::to_json: layers "
                                       "have different sliding windows (", window, ", ", w, "), which no config.json expresses");
      window = w;
    } else {
      any_full = true;
    }
  }
  if (mistral) {
    verl::detail::check<ConfigError>(window == 0 || !any_full, "verl::models::TransformerConfig::to_json: Mistral slides "
                                     "every layer or none, but `sliding_windows` mixes full and sliding layers");
    j["sliding_window"] = window > 0 ? nlohmann::json(window) : nlohmann::json(nullptr);
  } else if (!llama) {
    j["use_sliding_window"] = window > 0;
    j["sliding_window"] = window > 0 ? nlohmann::json(window) : nlohmann::json(nullptr);
    j["max_window_layers"] = num_hidden_layers;
    nlohmann::json lt = nlohmann::json::array();
    for (auto w : sliding_windows) lt.push_back(w > 0 ? "sliding_attention" : "full_attention");
    j["layer_types"] = lt;
  }
  j["dtype"] = detail::dtype_name(dtype);
  j.erase("torch_dtype");
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (pad_token_id) j["pad_token_id"] = *pad_token_id;
  if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else if (!eos_token_ids.empty()) {
    j["eos_token_id"] = eos_token_ids;
  }
  return j;
}

}  // namespace verl::models
