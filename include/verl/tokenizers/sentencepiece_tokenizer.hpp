#pragma once
//! \file
//! verl::SentencePieceTokenizer: a SentencePiece model (tokenizer.model, unigram or BPE) through the
//! sentencepiece C++ library (Debian libsentencepiece-dev 0.1.97; parity-tested against models trained by the
//! Python package 0.2.3). Satisfies verl::Tokenizer.

#include "verl/core/errors.hpp"

#include <sentencepiece_processor.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace verl {

//! A SentencePiece model. encode() adds no BOS/EOS (the model's `add_bos`/`add_eos` extra options are not
//! applied, as SentencePieceProcessor::Encode does not apply them either). Copies share the model; every
//! const member may be called from several threads at once.
class SentencePieceTokenizer {
 public:
  //! Loads a serialized ModelProto (tokenizer.model). The pad id is the model's pad piece, else eos (as verl
  //! sets pad = eos); `eos_override` replaces the model's eos id (e.g. a chat model ending turns elsewhere).
  explicit SentencePieceTokenizer(const std::filesystem::path& model_file,
                                  std::optional<std::int64_t> eos_override = std::nullopt)
      : processor_(std::make_shared<sentencepiece::SentencePieceProcessor>()) {
    const auto status = processor_->Load(model_file.string());
    detail::check<InputError>(status.ok(), "verl::SentencePieceTokenizer: cannot load ", model_file.string(), " (",
                              status.ToString(), "); expected a SentencePiece model file (tokenizer.model)");
    finish(eos_override);
  }

  //! Token ids of `text`, no BOS/EOS.
  [[nodiscard]] std::vector<std::int64_t> encode(std::string_view text) const {
    std::vector<int> ids;
    const auto status = processor_->Encode(text, &ids);
    detail::check<InputError>(status.ok(), "verl::SentencePieceTokenizer::encode: ", status.ToString());
    return {ids.begin(), ids.end()};
  }

  //! Text of `ids`, control tokens (bos, eos, pad) skipped: SentencePiece's own decoding.
  [[nodiscard]] std::string decode(std::span<const std::int64_t> ids) const { return decode(ids, true); }

  //! Text of `ids`; with skip_special_tokens false, control tokens appear as their piece text.
  [[nodiscard]] std::string decode(std::span<const std::int64_t> ids, bool skip_special_tokens) const {
    std::string out;
    std::vector<int> run;
    const auto flush = [&] {
      if (run.empty()) return;
      std::string text;
      const auto status = processor_->Decode(run, &text);
      detail::check<InputError>(status.ok(), "verl::SentencePieceTokenizer::decode: ", status.ToString());
      out += text;
      run.clear();
    };
    for (std::size_t i = 0; i < ids.size(); ++i) {
      detail::check<InputError>(ids[i] >= 0 && ids[i] < vocab_size_, "verl::SentencePieceTokenizer::decode: ids[", i,
                                "] = ", ids[i], "; expected an id in [0, ", vocab_size_, ")");
      const int id = static_cast<int>(ids[i]);
      if (!skip_special_tokens && processor_->IsControl(id)) {
        flush();
        out += processor_->IdToPiece(id);
      } else {
        run.push_back(id);
      }
    }
    flush();
    return out;
  }

  //! Id of a piece, if the model has it.
  [[nodiscard]] std::optional<std::int64_t> token_to_id(std::string_view piece) const {
    const int id = processor_->PieceToId(piece);
    // PieceToId answers unk for unknown pieces: only the unk piece itself maps to unk.
    if (id == processor_->unk_id() && processor_->IdToPiece(id) != piece) return std::nullopt;
    return id;
  }
  //! Piece of an id, if in range.
  [[nodiscard]] std::optional<std::string> id_to_token(std::int64_t id) const {
    if (id < 0 || id >= vocab_size_) return std::nullopt;
    return processor_->IdToPiece(static_cast<int>(id));
  }

  [[nodiscard]] std::int64_t vocab_size() const { return vocab_size_; }
  [[nodiscard]] std::int64_t eos_token_id() const { return eos_id_; }
  [[nodiscard]] std::int64_t pad_token_id() const { return pad_id_; }
  //! The model's bos id, if it has a bos piece.
  [[nodiscard]] std::optional<std::int64_t> bos_token_id() const {
    const int bos = processor_->bos_id();
    return bos >= 0 ? std::optional<std::int64_t>(bos) : std::nullopt;
  }
  //! The underlying processor, for what this class does not wrap (sampling, n-best, ...).
  [[nodiscard]] const sentencepiece::SentencePieceProcessor& processor() const { return *processor_; }

 private:
  void finish(std::optional<std::int64_t> eos_override) {
    vocab_size_ = processor_->GetPieceSize();
    eos_id_ = eos_override ? *eos_override : processor_->eos_id();
    detail::check<ConfigError>(eos_id_ >= 0 && eos_id_ < vocab_size_,
                               "verl::SentencePieceTokenizer: the model has no eos piece (eos_id = ", eos_id_,
                               "); expected a model trained with an eos piece or an eos_override in [0, ",
                               vocab_size_, ")");
    const int pad = processor_->pad_id();
    pad_id_ = pad >= 0 ? pad : eos_id_;
  }

  std::shared_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::int64_t vocab_size_ = 0, eos_id_ = -1, pad_id_ = -1;
};

}  // namespace verl
