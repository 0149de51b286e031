#pragma once
//! \file
//! Per-item non-tensor data carried beside the tensors of a verl::Batch (verl's DataProto
//! `non_tensor_batch`): what rule-based rewards and logging need about each item.

#include <nlohmann/json.hpp>

#include <string>

namespace verl {

//! The non-tensor data of one batch item.
struct ItemInfo {
  std::string prompt;         //!< prompt text, as given to the tokenizer (chat template applied)
  std::string data_source;    //!< dataset name; selects the reward rule (verl's `data_source`)
  std::string ground_truth;   //!< reference answer for rule-based rewards (verl's `reward_model.ground_truth`)
  nlohmann::json extra_info;  //!< anything else, e.g. {"split": "train", "index": 17}

  friend bool operator==(const ItemInfo&, const ItemInfo&) = default;
};

}  // namespace verl
