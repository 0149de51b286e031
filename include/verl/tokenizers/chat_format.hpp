#pragma once
//! \file
//! Chat formats: the text that transformers' `apply_chat_template(messages, tokenize=False,
//! add_generation_prompt=...)` renders for ChatML (plain, Qwen2-Instruct, Qwen2.5-Instruct) and Llama-3
//! (Meta-Llama-3-8B-Instruct), written as C++ instead of a Jinja engine. The parity test renders the same
//! conversations with transformers and the templates written out in tests/parity/tokenizers/generate_fixtures.py.
//!
//! Adding a format: any type with `std::string render(std::span<const verl::chat::Message>, bool
//! add_generation_prompt) const` satisfies verl::chat::ChatFormat and works with apply_chat_template.

#include "verl/core/errors.hpp"

#include <concepts>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace verl::chat {

//! One message of a conversation.
struct Message {
  std::string role;     //!< "system", "user", "assistant", "tool" (formats may accept others)
  std::string content;
};

//! A chat format: renders a conversation, optionally followed by the prompt that starts the assistant's turn.
//!
//! Satisfied when, for `const F& f`, `std::span<const Message> m` and `bool g`, `f.render(m, g)` returns a type
//! convertible to std::string. Laws: deterministic; the output with g=true extends the output with g=false.
template <class F>
concept ChatFormat = requires(const F& f, std::span<const Message> messages, bool add_generation_prompt) {
  { f.render(messages, add_generation_prompt) } -> std::convertible_to<std::string>;
};

//! ChatML turns `<|im_start|>role\ncontent<|im_end|>\n` and the generation prompt `<|im_start|>assistant\n`.
struct ChatML {
  enum class Flavor {
    plain,    //!< no default system prompt, any role
    qwen2,    //!< Qwen2-Instruct: "You are a helpful assistant." when the first message is not a system one
    qwen2_5,  //!< Qwen2.5-Instruct (tool-free branch): default system "You are Qwen, created by Alibaba Cloud. You
              //!< are a helpful assistant.", consecutive `tool` messages grouped into one user turn of
              //!< <tool_response> blocks; roles other than system/user/assistant/tool are rejected
  };
  Flavor flavor = Flavor::plain;

  [[nodiscard]] std::string render(std::span<const Message> messages, bool add_generation_prompt) const {
    std::string out;
    const auto turn = [&](std::string_view role, std::string_view content) {
      out.append("<|im_start|>").append(role).append("\n").append(content).append("<|im_end|>\n");
    };
    if (flavor == Flavor::qwen2_5) {
      detail::check<InputError>(!messages.empty(),
                                "verl::chat::ChatML(qwen2_5): the conversation is empty; the Qwen2.5 template reads "
                                "messages[0], expected at least one message");
      if (messages[0].role == "system") turn("system", messages[0].content);
      else turn("system", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
      for (std::size_t i = 0; i < messages.size(); ++i) {
        const auto& m = messages[i];
        if (m.role == "user" || m.role == "assistant" || (m.role == "system" && i > 0)) {
          turn(m.role, m.content);
        } else if (m.role == "tool") {
          if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
          out.append("\n<tool_response>\n").append(m.content).append("\n</tool_response>");
          if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += "<|im_end|>\n";
        } else if (m.role != "system") {
          throw InputError(detail::concat_message("verl::chat::ChatML(qwen2_5): messages[", i, "].role = \"", m.role,
                                                  "\"; expected system, user, assistant or tool"));
        }
      }
    } else {
      for (std::size_t i = 0; i < messages.size(); ++i) {
        if (i == 0 && flavor == Flavor::qwen2 && messages[0].role != "system")
          turn("system", "You are a helpful assistant.");
        turn(messages[i].role, messages[i].content);
      }
    }
    if (add_generation_prompt) out += "<|im_start|>assistant\n";
    return out;
  }
};

//! Python's str.strip(): removes the characters for which str.isspace() is true (Unicode White_Space plus the
//! information separators U+001C..U+001F), as Jinja's `trim` filter does.
[[nodiscard]] inline std::string_view python_strip(std::string_view s) {
  const auto space_len_at = [&](std::size_t i) -> std::size_t {  // byte length of a space char at i, else 0
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20)) return 1;
    const auto rest = s.substr(i);
    for (const std::string_view sp : {"\u0085", "\u00A0", "\u1680", "\u2000", "\u2001", "\u2002", "\u2003", "\u2004",
                                      "\u2005", "\u2006", "\u2007", "\u2008", "\u2009", "\u200A", "\u2028", "\u2029",
                                      "\u202F", "\u205F", "\u3000"})
      if (rest.substr(0, sp.size()) == sp) return sp.size();
    return 0;
  };
  std::size_t b = 0;
  while (b < s.size()) {
    const std::size_t n = space_len_at(b);
    if (n == 0) break;
    b += n;
  }
  std::size_t e = s.size();
  while (e > b) {
    std::size_t k = e - 1;
    while (k > b && (static_cast<unsigned char>(s[k]) & 0xC0) == 0x80) --k;
    if (space_len_at(k) != e - k) break;
    e = k;
  }
  return s.substr(b, e - b);
}

//! Llama-3 Instruct (Meta-Llama-3-8B-Instruct's template): `<|begin_of_text|>` before the first turn, turns
//! `<|start_header_id|>role<|end_header_id|>\n\n` + content stripped of surrounding whitespace + `<|eot_id|>`,
//! generation prompt `<|start_header_id|>assistant<|end_header_id|>\n\n`. (Llama-3.1's template, with its
//! dated default system prompt and tools, is a different format.)
struct Llama3 {
  std::string bos_token = "<|begin_of_text|>";

  [[nodiscard]] std::string render(std::span<const Message> messages, bool add_generation_prompt) const {
    std::string out;
    for (std::size_t i = 0; i < messages.size(); ++i) {
      if (i == 0) out += bos_token;
      out.append("<|start_header_id|>").append(messages[i].role).append("<|end_header_id|>\n\n");
      out.append(python_strip(messages[i].content)).append("<|eot_id|>");
    }
    if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
    return out;
  }
};

inline constexpr ChatML chatml{ChatML::Flavor::plain};
inline constexpr ChatML qwen2{ChatML::Flavor::qwen2};
inline constexpr ChatML qwen2_5{ChatML::Flavor::qwen2_5};

//! Renders `messages` with `format` (transformers' apply_chat_template(..., tokenize=False)).
template <ChatFormat F>
[[nodiscard]] std::string apply_chat_template(const F& format, std::span<const Message> messages,
                                              bool add_generation_prompt = false) {
  return format.render(messages, add_generation_prompt);
}

}  // namespace verl::chat
