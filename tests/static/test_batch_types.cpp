// include/verl/core/batch.hpp: the batch's field algebra is computed at compile time (compiling is passing).
#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"

#include <type_traits>

namespace {
using namespace verl::fields;
struct my_reward : verl::field<"my_reward", verl::FieldLayout::sequence> {};
using Rollout = verl::Batch<prompts, responses, response_mask, input_ids, attention_mask>;
using Scored = verl::Batch<prompts, responses, response_mask, input_ids, attention_mask, my_reward>;
}  // namespace

static_assert(Rollout::num_fields == 5);
static_assert(Rollout::has<responses> && !Rollout::has<values>);
static_assert(std::is_same_v<decltype(std::declval<Rollout>().with<my_reward>({})), Scored>);
static_assert(std::is_same_v<decltype(std::declval<Scored>().without<prompts, my_reward>()),
                             verl::Batch<responses, response_mask, input_ids, attention_mask>>);
static_assert(std::is_same_v<decltype(std::declval<Rollout>().select<attention_mask, input_ids>()),
                             verl::Batch<attention_mask, input_ids>>);
static_assert(std::is_same_v<decltype(std::declval<Scored>().rename<my_reward, token_level_scores>()),
                             verl::Batch<prompts, responses, response_mask, input_ids, attention_mask,
                                         token_level_scores>>);
// Pipeline stages constrain their inputs with BatchWith.
static_assert(verl::BatchWith<Scored, my_reward, responses>);
static_assert(!verl::BatchWith<Rollout, my_reward>);
// The layout of user fields is part of the tag.
static_assert(my_reward::layout == verl::FieldLayout::sequence);
static_assert(Scored::field_names[5] == "my_reward");
