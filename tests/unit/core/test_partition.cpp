// Balanced partitions by sequence length (include/verl/core/partition.hpp).
// Reference: verl's verl/utils/seqlen_balancing.py at commit b178a3cd (karmarkar_karp, greedy_partition,
// get_seqlen_balanced_partitions); expected partitions below were produced by that function in verl 0.9.1
// (PyPI), whose karmarkar_karp is the same algorithm.
#include "verl/core/partition.hpp"

#include "catch_torch.hpp"

#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <vector>

namespace {

using verl::Partitions;

// Every index in [0,n) exactly once, k non-empty partitions, sorted within each, equal sizes when asked.
void check_valid(const Partitions& parts, std::size_t n, int64_t k, bool equal_size) {
  REQUIRE(parts.size() == static_cast<std::size_t>(k));
  std::vector<int> seen(n, 0);
  for (const auto& p : parts) {
    CHECK_FALSE(p.empty());
    CHECK(std::is_sorted(p.begin(), p.end()));
    if (equal_size) CHECK(p.size() == n / static_cast<std::size_t>(k));
    for (const auto i : p) {
      REQUIRE(i >= 0);
      REQUIRE(i < static_cast<int64_t>(n));
      ++seen[static_cast<std::size_t>(i)];
    }
  }
  CHECK(std::all_of(seen.begin(), seen.end(), [](int c) { return c == 1; }));
}

// The optimal spread by exhaustive search over all assignments (k^n), non-empty partitions only.
int64_t brute_force_spread(const std::vector<int64_t>& s, int64_t k, bool equal_size) {
  const auto n = s.size();
  std::vector<int64_t> assign(n, 0);
  int64_t best = std::numeric_limits<int64_t>::max();
  std::function<void(std::size_t)> rec = [&](std::size_t i) {
    if (i == n) {
      std::vector<int64_t> sums(static_cast<std::size_t>(k), 0);
      std::vector<std::size_t> counts(static_cast<std::size_t>(k), 0);
      for (std::size_t j = 0; j < n; ++j) {
        sums[static_cast<std::size_t>(assign[j])] += s[j];
        ++counts[static_cast<std::size_t>(assign[j])];
      }
      for (const auto c : counts)
        if (c == 0 || (equal_size && c != n / static_cast<std::size_t>(k))) return;
      best = std::min(best, *std::max_element(sums.begin(), sums.end()) - *std::min_element(sums.begin(), sums.end()));
      return;
    }
    for (int64_t p = 0; p < k; ++p) {
      assign[i] = p;
      rec(i + 1);
    }
  };
  rec(0);
  return best;
}

std::vector<int64_t> random_seqlens(std::size_t n, int64_t lo, int64_t hi, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> dist(lo, hi);
  std::vector<int64_t> s(n);
  for (auto& v : s) v = dist(rng);
  return s;
}

}  // namespace

TEST_CASE("partition: karmarkar_karp_partitions reproduces verl's karmarkar_karp", "[core][partition]") {
  // Pins verl seqlen_balancing.get_seqlen_balanced_partitions (= karmarkar_karp + sort) output, exactly.
  struct Case {
    std::vector<int64_t> seqlens;
    int64_t k;
    bool equal_size;
    Partitions expected;
  };
  const std::vector<Case> cases = {
      {{1, 2, 3, 4, 5, 6, 7, 8}, 2, true, {{1, 2, 4, 7}, {0, 3, 5, 6}}},
      {{8, 7, 6, 5, 4}, 2, false, {{1, 3, 4}, {0, 2}}},
      {{10, 1, 1, 1, 1, 1}, 3, true, {{0, 1}, {2, 5}, {3, 4}}},
      {{5, 9, 13, 2, 4, 11, 7, 3, 8}, 3, true, {{0, 2, 7}, {1, 4, 8}, {3, 5, 6}}},
      {{31, 4, 15, 9, 26, 5, 35, 8, 97, 93}, 4, false, {{8}, {9}, {1, 2, 3, 5, 6}, {0, 4, 7}}},
      {{100, 90, 80, 1, 2, 3, 50, 60}, 4, true, {{6, 7}, {0, 3}, {1, 4}, {2, 5}}},
  };
  for (const auto& c : cases) {
    INFO("k=" << c.k << " equal_size=" << c.equal_size);
    CHECK(verl::karmarkar_karp_partitions(c.seqlens, c.k, c.equal_size) == c.expected);
  }
}

TEST_CASE("partition: get_seqlen_balanced_partitions reaches the optimum on easy cases", "[core][partition]") {
  // verl's KK alone leaves spread 2 on {8,7,6,5,4} into 2 (see above); the refinement finds 15/15.
  struct Case {
    std::vector<int64_t> seqlens;
    int64_t k;
    bool equal_size;
    int64_t optimum;
  };
  const std::vector<Case> cases = {
      {{1, 2, 3, 4, 5, 6, 7, 8}, 2, true, 0},
      {{8, 7, 6, 5, 4}, 2, false, 0},
      {{5, 5, 5, 5}, 2, true, 0},
      {{1, 2, 3, 4, 5, 6}, 3, true, 0},
      {{10, 1, 1, 1, 1, 1}, 3, true, 9},
      {{100, 90, 80, 1, 2, 3, 50, 60}, 4, true, 27},
      {{31, 4, 15, 9, 26, 5, 35, 8, 97, 93}, 4, false, 31},
      {{7, 7, 7}, 3, false, 0},
      {{0, 0, 0, 5}, 2, false, 5},
  };
  for (const auto& c : cases) {
    INFO("k=" << c.k << " equal_size=" << c.equal_size);
    REQUIRE(brute_force_spread(c.seqlens, c.k, c.equal_size) == c.optimum);
    const auto parts = verl::get_seqlen_balanced_partitions(c.seqlens, c.k, c.equal_size);
    check_valid(parts, c.seqlens.size(), c.k, c.equal_size);
    CHECK(verl::partition_spread(c.seqlens, parts) == c.optimum);
  }
}

TEST_CASE("partition: balanced partitions are valid and near-optimal on small random cases", "[core][partition]") {
  // Against exhaustive search; never worse than verl's KK or verl's greedy_partition on the same input.
  int optimal = 0;
  int total = 0;
  for (uint32_t seed = 0; seed < 60; ++seed) {
    for (const auto& [n, k, equal_size] : {std::tuple<std::size_t, int64_t, bool>{8, 2, true},
                                           {9, 3, true},
                                           {9, 3, false},
                                           {10, 2, false}}) {
      const auto s = random_seqlens(n, 1, 50, seed);
      const auto parts = verl::get_seqlen_balanced_partitions(s, k, equal_size);
      check_valid(parts, n, k, equal_size);
      const auto spread = verl::partition_spread(s, parts);
      const auto opt = brute_force_spread(s, k, equal_size);
      CHECK(spread >= opt);
      CHECK(spread <= verl::partition_spread(s, verl::karmarkar_karp_partitions(s, k, equal_size)));
      CHECK(spread <= verl::partition_spread(s, verl::greedy_partitions(s, k, equal_size)));
      optimal += spread == opt ? 1 : 0;
      ++total;
    }
  }
  // Measured: 233 of 240 optimal (the rest within a few tokens); verl's KK alone: see compare_partition_vs_verl.py.
  INFO(optimal << " of " << total << " optimal");
  CHECK(optimal * 100 >= total * 95);
}

TEST_CASE("partition: balanced partitions of 1024 items are within a few tokens of perfect", "[core][partition]") {
  // Response-length-like data: 1024 lengths in [1, 4096] into 8 and 16 equal-size ranks.
  for (const int64_t k : {8, 16}) {
    for (uint32_t seed = 0; seed < 5; ++seed) {
      const auto s = random_seqlens(1024, 1, 4096, 1000 + seed);
      const auto parts = verl::get_seqlen_balanced_partitions(s, k, /*equal_size=*/true);
      check_valid(parts, s.size(), k, true);
      const auto spread = verl::partition_spread(s, parts);
      const auto kk = verl::partition_spread(s, verl::karmarkar_karp_partitions(s, k, true));
      const auto greedy = verl::partition_spread(s, verl::greedy_partitions(s, k, true));
      INFO("k=" << k << " seed=" << seed << " spread=" << spread << " kk=" << kk << " greedy=" << greedy);
      CHECK(spread <= kk);
      CHECK(spread <= greedy);
      CHECK(spread <= 2);  // the lower bound is 0 or 1 (total % k); measured: always at the bound
    }
  }
}

TEST_CASE("partition: balanced partitions are deterministic", "[core][partition]") {
  const auto s = random_seqlens(512, 1, 2048, 42);
  CHECK(verl::get_seqlen_balanced_partitions(s, 8, true) == verl::get_seqlen_balanced_partitions(s, 8, true));
  CHECK(verl::get_seqlen_balanced_partitions(s, 7, false) == verl::get_seqlen_balanced_partitions(s, 7, false));
  CHECK(torch::equal(verl::balanced_permutation(s, 16), verl::balanced_permutation(s, 16)));
}

TEST_CASE("partition: unequal-size partitions stay non-empty", "[core][partition]") {
  const std::vector<int64_t> zeros(6, 0);
  check_valid(verl::get_seqlen_balanced_partitions(zeros, 6, false), 6, 6, false);
  const std::vector<int64_t> skewed = {1000, 0, 0, 0, 1, 1};
  const auto parts = verl::get_seqlen_balanced_partitions(skewed, 4, false);
  check_valid(parts, skewed.size(), 4, false);
  CHECK(verl::partition_spread(skewed, parts) == 1000);
}

TEST_CASE("partition: balanced_permutation reorders a batch into balanced contiguous chunks", "[core][partition]") {
  const auto s = random_seqlens(64, 1, 512, 3);
  const auto perm = verl::balanced_permutation(s, 4);                                        // (64,) int64
  REQUIRE(perm.sizes() == torch::IntArrayRef({64}));
  REQUIRE(perm.scalar_type() == torch::kLong);
  CHECK(torch::equal(std::get<0>(perm.sort()), torch::arange(64)));
  const auto parts = verl::get_seqlen_balanced_partitions(s, 4, true);
  const auto lens = torch::tensor(s).index_select(0, perm).view({4, 16}).sum(-1);            // (4,)
  CHECK(torch::equal(lens, torch::tensor(verl::partition_sums(s, parts))));
  // The tensor overload, e.g. from attention_mask.sum(-1).
  CHECK(torch::equal(verl::balanced_permutation(torch::tensor(s).to(torch::kInt), 4), perm));
}

TEST_CASE("partition: rejects bad arguments with a message naming them", "[core][partition]") {
  using Catch::Contains;
  const std::vector<int64_t> s = {3, 1, 4, 1, 5};
  CHECK_THROWS_AS(verl::get_seqlen_balanced_partitions(s, 0, false), verl::ConfigError);
  CHECK_THROWS_WITH(verl::get_seqlen_balanced_partitions(s, 0, false),
                    Contains("verl::get_seqlen_balanced_partitions") && Contains("`k_partitions` = 0") &&
                        Contains("expected 1 <= k_partitions <= the number of items (5)"));
  CHECK_THROWS_WITH(verl::get_seqlen_balanced_partitions(s, 6, false), Contains("`k_partitions` = 6"));
  CHECK_THROWS_WITH(verl::get_seqlen_balanced_partitions(s, 2, true),
                    Contains("`k_partitions` = 2") && Contains("n % k_partitions == 0"));
  CHECK_THROWS_WITH(verl::get_seqlen_balanced_partitions(std::vector<int64_t>{3, -1}, 1, false),
                    Contains("`seqlens`") && Contains("seqlens[1] = -1") && Contains(">= 0"));
  CHECK_THROWS_WITH(verl::balanced_permutation(s, 2), Contains("verl::balanced_permutation"));
  CHECK_THROWS_WITH(verl::karmarkar_karp_partitions(s, 9, false), Contains("verl::karmarkar_karp_partitions"));
  CHECK_THROWS_WITH(verl::partition_spread(s, Partitions{{0, 7}}),
                    Contains("verl::partition_sums") && Contains("item 7"));
  CHECK_THROWS_AS(verl::balanced_permutation(torch::ones({2, 2}, torch::kLong), 2), verl::ShapeError);
  CHECK_THROWS_WITH(verl::balanced_permutation(torch::ones({4}), 2),
                    Contains("`seqlens`") && Contains("Float") && Contains("1-D integer tensor"));
}
