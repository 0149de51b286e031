// Field tags (include/verl/core/field.hpp, include/verl/core/fields.hpp).
#include "verl/core/field.hpp"
#include "verl/core/fields.hpp"

#include "catch_torch.hpp"

namespace {
struct my_score : verl::field<"my_score", verl::FieldLayout::sequence> {};
struct not_a_field {};
}  // namespace

TEST_CASE("field tags carry their name and layout", "[core][field]") {
  STATIC_REQUIRE(verl::FieldTag<verl::fields::input_ids>);
  STATIC_REQUIRE(verl::FieldTag<my_score>);
  STATIC_REQUIRE_FALSE(verl::FieldTag<not_a_field>);
  STATIC_REQUIRE_FALSE(verl::FieldTag<int>);
  CHECK(verl::fields::advantages::name == "advantages");
  CHECK(verl::fields::uid::layout == verl::FieldLayout::sequence);
  CHECK(verl::fields::old_log_probs::layout == verl::FieldLayout::token);
  CHECK(my_score::name == "my_score");
}
