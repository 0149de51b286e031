// verl::Batch (include/verl/core/batch.hpp). Semantics pinned against verl's DataProto
// (verl/protocol.py at commit b178a3cd): repeat(interleave=True), split, chunk, concat, reorder, select_idxs.
#include "verl/core/batch.hpp"
#include "verl/core/fields.hpp"
#include "verl/core/item_info.hpp"

#include "catch_torch.hpp"

#include <range/v3/range/conversion.hpp>
#include <range/v3/view/transform.hpp>

#include <sstream>
#include <type_traits>

using namespace verl::fields;

namespace {

struct my_score : verl::field<"my_score", verl::FieldLayout::sequence> {};

// (B,T) ids whose value encodes the item: row i holds 100*i + t.
torch::Tensor ids_for(std::int64_t batch, std::int64_t len) {
  return torch::arange(batch).unsqueeze(1) * 100 + torch::arange(len).unsqueeze(0);  // (B,T)
}

using Prompted = verl::Batch<input_ids, attention_mask>;

Prompted make_prompted(std::int64_t batch, std::int64_t len) {
  return Prompted(ids_for(batch, len), torch::ones({batch, len}, torch::kLong));
}

std::vector<verl::ItemInfo> items_for(std::int64_t batch) {
  std::vector<verl::ItemInfo> items;
  for (std::int64_t i = 0; i < batch; ++i)
    items.push_back({"prompt " + std::to_string(i), "gsm8k", std::to_string(i), {{"index", i}}});
  return items;
}

}  // namespace

TEST_CASE("Batch type knows its fields at compile time", "[core][batch]") {
  STATIC_REQUIRE(Prompted::has<input_ids>);
  STATIC_REQUIRE_FALSE(Prompted::has<values>);
  STATIC_REQUIRE(Prompted::num_fields == 2);
  STATIC_REQUIRE(Prompted::field_names[1] == "attention_mask");
  STATIC_REQUIRE(verl::BatchWith<Prompted, input_ids>);
  STATIC_REQUIRE(verl::BatchWith<const Prompted&, attention_mask, input_ids>);
  STATIC_REQUIRE_FALSE(verl::BatchWith<Prompted, input_ids, values>);
  STATIC_REQUIRE_FALSE(verl::BatchWith<int, input_ids>);
}

TEST_CASE("Batch construction checks the leading dimension and names the field", "[core][batch]") {
  const auto b = make_prompted(4, 6);
  CHECK(b.size() == 4);
  CHECK(torch::equal(b.get<input_ids>(), ids_for(4, 6)));
  CHECK(torch::equal(verl::get<attention_mask>(b), torch::ones({4, 6}, torch::kLong)));

  CHECK_THROWS_AS(Prompted(ids_for(4, 6), torch::ones({3, 6})), verl::ShapeError);
  CHECK_THROWS_WITH(Prompted(ids_for(4, 6), torch::ones({3, 6})),
                    Catch::Contains("field `attention_mask` has shape [3, 6], but the batch size is 4") &&
                        Catch::Contains("field `input_ids` of shape [4, 6]"));
  CHECK_THROWS_WITH(Prompted(ids_for(4, 6), torch::Tensor{}), Catch::Contains("`attention_mask` is an undefined tensor"));
  // A per-token field needs (B,T); a per-item field only (B,).
  CHECK_THROWS_WITH(Prompted(torch::arange(4), torch::ones({4, 6})),
                    Catch::Contains("`input_ids` has shape [4], expected at least 2 dimensions"));
  CHECK(verl::Batch<my_score>(torch::zeros({5})).size() == 5);
  CHECK_THROWS_WITH(verl::Batch<my_score>(torch::tensor(1.0)), Catch::Contains("expected at least 1 dimensions"));
  // Items: none or one per item.
  CHECK_THROWS_WITH(Prompted(ids_for(4, 6), torch::ones({4, 6}), items_for(3)),
                    Catch::Contains("3 item infos for a batch of 4 items"));
  CHECK(Prompted(ids_for(4, 6), torch::ones({4, 6}), items_for(4)).items()[2].prompt == "prompt 2");
}

TEST_CASE("Batch with/set/select/without/rename change the type as documented", "[core][batch]") {
  const auto b = make_prompted(3, 5);
  const auto logp = torch::randn({3, 4});

  auto wider = b.with<old_log_probs>(logp);
  STATIC_REQUIRE(std::is_same_v<decltype(wider), verl::Batch<input_ids, attention_mask, old_log_probs>>);
  CHECK(wider.get<old_log_probs>().is_same(logp));
  CHECK(wider.get<input_ids>().is_same(b.get<input_ids>()));  // shares storage
  CHECK_THROWS_WITH(b.with<values>(torch::zeros({2, 4})),
                    Catch::Contains("verl::Batch::with: field `values` has shape [2, 4], but the batch size is 3"));

  wider.set<old_log_probs>(torch::zeros({3, 7}));
  CHECK(wider.get<old_log_probs>().size(1) == 7);
  CHECK_THROWS_WITH(wider.set<old_log_probs>(torch::zeros({1, 7})), Catch::Contains("verl::Batch::set"));

  auto selected = wider.select<old_log_probs, input_ids>();
  STATIC_REQUIRE(std::is_same_v<decltype(selected), verl::Batch<old_log_probs, input_ids>>);
  CHECK(selected.get<input_ids>().is_same(b.get<input_ids>()));

  auto narrower = wider.without<attention_mask>();
  STATIC_REQUIRE(std::is_same_v<decltype(narrower), verl::Batch<input_ids, old_log_probs>>);
  CHECK(narrower.size() == 3);

  auto renamed = wider.rename<old_log_probs, ref_log_probs>();
  STATIC_REQUIRE(std::is_same_v<decltype(renamed), verl::Batch<input_ids, attention_mask, ref_log_probs>>);
  CHECK(renamed.get<ref_log_probs>().is_same(wider.get<old_log_probs>()));
}

TEST_CASE("Batch slice, index_select and reorder move items with their tensors", "[core][batch]") {
  const auto b = make_prompted(5, 3).with_items(items_for(5));

  const auto s = b.slice(1, 4);
  CHECK(s.size() == 3);
  CHECK(torch::equal(s.get<input_ids>(), ids_for(5, 3).narrow(0, 1, 3)));
  CHECK(s.get<input_ids>().data_ptr() == b.get<input_ids>()[1].data_ptr());  // a view, as DataProto.slice
  CHECK(s.items().front().prompt == "prompt 1");
  CHECK(b.slice(5, 5).size() == 0);
  CHECK_THROWS_WITH(b.slice(2, 6), Catch::Contains("range [2, 6) is outside the batch of 5 items"));

  const auto picked = b.index_select(torch::tensor({4, 0, 4}, torch::kLong));
  CHECK(picked.size() == 3);
  CHECK(torch::equal(picked.get<input_ids>().select(1, 0), torch::tensor({400, 0, 400})));
  CHECK(picked.items()[0].ground_truth == "4");
  CHECK_THROWS_WITH(b.index_select(torch::tensor({0, 5})), Catch::Contains("index 5 at position 1"));
  CHECK_THROWS_WITH(b.index_select(torch::zeros({2, 2}, torch::kLong)), Catch::Contains("1-D integer tensor"));

  const auto reordered = b.reorder(torch::tensor({2, 0, 1, 4, 3}));
  CHECK(torch::equal(reordered.get<input_ids>().select(1, 0), torch::tensor({200, 0, 100, 400, 300})));
  CHECK(reordered.items()[3].ground_truth == "4");
  CHECK_THROWS_WITH(b.reorder(torch::tensor({0, 0, 1, 2, 3})), Catch::Contains("out of range or repeated"));
  CHECK_THROWS_WITH(b.reorder(torch::tensor({0, 1})), Catch::Contains("expected a permutation of 5 indices"));
}

TEST_CASE("Batch shuffle is a deterministic permutation for a seed", "[core][batch]") {
  const auto b = make_prompted(64, 2);
  const auto first = b.shuffle(7).get<input_ids>().select(1, 0);
  const auto again = b.shuffle(7).get<input_ids>().select(1, 0);
  const auto other = b.shuffle(8).get<input_ids>().select(1, 0);
  CHECK(torch::equal(first, again));
  CHECK_FALSE(torch::equal(first, other));
  CHECK(torch::equal(std::get<0>(first.sort()), torch::arange(64) * 100));
}

TEST_CASE("Batch repeat_interleave repeats each item consecutively (DataProto.repeat, interleave=True)",
          "[core][batch]") {
  const auto b = make_prompted(2, 3).with<my_score>(torch::tensor({1.5, -2.0})).with_items(items_for(2));
  const auto r = b.repeat_interleave(3);
  CHECK(r.size() == 6);
  CHECK(torch::equal(r.get<input_ids>().select(1, 0), torch::tensor({0, 0, 0, 100, 100, 100})));
  CHECK(torch::equal(r.get<my_score>(), torch::tensor({1.5, 1.5, 1.5, -2.0, -2.0, -2.0})));
  CHECK(r.items()[4].prompt == "prompt 1");
  CHECK(b.repeat_interleave(1).size() == 2);
  CHECK_THROWS_AS(b.repeat_interleave(0), verl::ConfigError);
}

TEST_CASE("Batch to(dtype) converts floating-point fields only", "[core][batch]") {
  const auto b = make_prompted(2, 3).with<values>(torch::randn({2, 3}));
  const auto half = b.to(torch::kBFloat16);
  CHECK(half.get<values>().scalar_type() == torch::kBFloat16);
  CHECK(half.get<input_ids>().scalar_type() == torch::kLong);
  CHECK(half.get<attention_mask>().scalar_type() == torch::kLong);
  CHECK(b.to(torch::Device(torch::kCPU)).get<values>().is_same(b.get<values>()));
}

TEST_CASE("Batch split yields mini/micro-batches as views, the last one smaller (DataProto.split)",
          "[core][batch]") {
  const auto b = make_prompted(10, 2);
  const auto sizes = b.split(4) | ranges::views::transform([](const auto& part) { return part.size(); }) |
                     ranges::to<std::vector>();
  CHECK(sizes == std::vector<std::int64_t>{4, 4, 2});

  std::vector<Prompted> parts = b.split(4) | ranges::to<std::vector>();
  CHECK(parts[1].get<input_ids>().data_ptr() == b.get<input_ids>()[4].data_ptr());
  CHECK(torch::equal(verl::concat(parts).get<input_ids>(), b.get<input_ids>()));

  CHECK((b.split(10) | ranges::to<std::vector>()).size() == 1);
  CHECK((b.split(100) | ranges::to<std::vector>()).front().size() == 10);
  CHECK_THROWS_AS(b.split(0), verl::ConfigError);
}

TEST_CASE("Batch chunk gives near-equal contiguous parts", "[core][batch]") {
  const auto b = make_prompted(10, 2);
  const auto sizes = b.chunk(3) | ranges::views::transform([](const auto& part) { return part.size(); }) |
                     ranges::to<std::vector>();
  CHECK(sizes == std::vector<std::int64_t>{4, 3, 3});
  std::vector<Prompted> parts = b.chunk(3) | ranges::to<std::vector>();
  CHECK(torch::equal(verl::concat(parts).get<input_ids>(), b.get<input_ids>()));
  CHECK((b.chunk(10) | ranges::to<std::vector>()).back().size() == 1);
  CHECK_THROWS_WITH(b.chunk(11), Catch::Contains("parts must be in [1, 10]"));
}

TEST_CASE("concat joins tensors and items, and reports mismatches", "[core][batch]") {
  const auto a = make_prompted(2, 3).with_items(items_for(2));
  const auto b = make_prompted(3, 3).with_items(items_for(3));
  const auto joined = verl::concat(std::vector{a, b});
  CHECK(joined.size() == 5);
  CHECK(joined.items()[2].prompt == "prompt 0");
  CHECK(torch::equal(joined.get<input_ids>().narrow(0, 2, 3), b.get<input_ids>()));

  CHECK_THROWS_WITH(verl::concat(std::vector{a, make_prompted(3, 3)}),
                    Catch::Contains("1 of 2 batches carry item infos"));
  CHECK_THROWS_WITH(verl::concat(std::vector{make_prompted(2, 3), make_prompted(2, 4)}),
                    Catch::Contains("field `input_ids` has shape [2, 4] in one batch and [2, 3] in the first"));
  CHECK_THROWS_WITH(verl::concat(std::vector<Prompted>{}), Catch::Contains("no batches"));
}

TEST_CASE("Batch prints its fields and shapes", "[core][batch]") {
  std::ostringstream out;
  out << make_prompted(2, 3).with<my_score>(torch::zeros({2}));
  CHECK(out.str() == "Batch(size=2){input_ids: [2, 3] Long, attention_mask: [2, 3] Long, my_score: [2] Float}");
}

TEST_CASE("A batch without fields takes its size from its items", "[core][batch]") {
  const verl::Batch<> meta(items_for(3));
  CHECK(meta.size() == 3);
  const auto with_ids = meta.with<input_ids>(ids_for(3, 2));
  CHECK(with_ids.items()[1].prompt == "prompt 1");
  CHECK_THROWS_AS(meta.with<input_ids>(ids_for(2, 2)), verl::ShapeError);
}
