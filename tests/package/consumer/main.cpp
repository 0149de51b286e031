// A user program built against the installed verl-cpp package (find_package(verl CONFIG REQUIRED)).
// It includes the umbrella header, defines its own field, and runs a few batch operations; it prints
// "verl consumer: ok" only when every result is what the library documents.
#include <verl/verl.hpp>

#include <torch/torch.h>

#include <cstdio>

namespace {
struct rank_of_item : verl::field<"rank_of_item", verl::FieldLayout::sequence> {};
}  // namespace

int main() {
  using namespace verl::fields;
  const auto ids = torch::arange(8 * 3).reshape({8, 3});                       // (B,T)
  const verl::Batch<input_ids, attention_mask> batch(ids, torch::ones({8, 3}, torch::kLong));
  const auto tagged = batch.with<rank_of_item>(torch::arange(8) / 2);            // (B,)
  const auto repeated = tagged.repeat_interleave(2);                            // (2B, ...)

  std::int64_t parts = 0;
  for (const auto& part : repeated.split(5)) parts += part.size() > 0 ? 1 : 0;

  const bool ok = repeated.size() == 16 && parts == 4 &&
                  repeated.get<input_ids>()[3].equal(ids[1]) &&
                  verl::concat(std::vector{tagged, tagged}).size() == 16;
  std::printf("verl %s consumer: %s\n", verl::version_string, ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
