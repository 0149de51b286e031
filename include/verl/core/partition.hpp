#pragma once
//! \file
//! Balanced partition of a batch's items across data-parallel ranks (or micro-batches) by token count, as
//! verl's `get_seqlen_balanced_partitions(seqlen_list, k_partitions, equal_size)`
//! (verl/utils/seqlen_balancing.py, pinned at commit b178a3cd; compared against verl 0.9.1 from PyPI).
//!
//! The partition is the Karmarkar-Karp largest differencing method (LDM) for k-way partitioning, as verl runs
//! it, followed by a refinement pass that verl does not have: exchanges (swaps, and with unequal sizes also
//! moves) between the heaviest or lightest partition and another one, each strictly lowering the sum of
//! squared partition sums, so the spread (max - min of the partition sums) never grows and the pass ends.
//!
//!     auto perm  = verl::balanced_permutation(seqlens, world_size);   // (n,) int64: reorder the batch ...
//!     auto shard = batch.index_select(0, perm).chunk(world_size)[rank];   // ... then rank r takes chunk r
//!
//! Preconditions everywhere: 1 <= k_partitions <= n, seqlens[i] >= 0, and n % k_partitions == 0 when
//! equal_size. Violations throw verl::ConfigError.

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <numeric>
#include <queue>
#include <span>
#include <utility>
#include <vector>

#include "verl/core/errors.hpp"

namespace verl {

//! k lists of item indices; partition p holds the items partitions[p].
using Partitions = std::vector<std::vector<int64_t>>;

namespace detail {

//! Throws ConfigError unless (seqlens, k_partitions, equal_size) meet the preconditions of the file.
inline void check_partition_args(const char* fn, std::span<const int64_t> seqlens, int64_t k_partitions,
                                 bool equal_size) {
  const auto n = static_cast<int64_t>(seqlens.size());
  check<ConfigError>(k_partitions >= 1 && k_partitions <= n, fn, ": argument `k_partitions` = ", k_partitions,
                     ", expected 1 <= k_partitions <= the number of items (", n, ")");
  check<ConfigError>(!equal_size || n % k_partitions == 0, fn, ": argument `k_partitions` = ", k_partitions,
                     " does not divide the number of items (", n,
                     "); equal_size = true expects n % k_partitions == 0");
  for (std::size_t i = 0; i < seqlens.size(); ++i)
    check<ConfigError>(seqlens[i] >= 0, fn, ": argument `seqlens` has seqlens[", i, "] = ", seqlens[i],
                       ", expected every sequence length >= 0");
}

//! One set of a Karmarkar-Karp state: its items and their sum.
struct KKSet {
  int64_t sum = 0;
  std::vector<int64_t> items;
};

//! Descending order of sets: by sum, then size, then items (verl's Set.__lt__, reversed), for determinism.
[[nodiscard]] inline bool kk_set_greater(const KKSet& a, const KKSet& b) {
  if (a.sum != b.sum) return a.sum > b.sum;
  if (a.items.size() != b.items.size()) return a.items.size() > b.items.size();
  return a.items > b.items;
}

//! A partial k-way partition; sets are kept in descending order.
struct KKState {
  std::vector<KKSet> sets;
  int64_t id = 0;  //!< creation order, the last tie-break of the priority queue
  [[nodiscard]] int64_t spread() const { return sets.front().sum - sets.back().sum; }
};

//! Sums of `partitions` under `seqlens`.
[[nodiscard]] inline std::vector<int64_t> sums_of(std::span<const int64_t> seqlens, const Partitions& partitions) {
  std::vector<int64_t> sums(partitions.size(), 0);
  for (std::size_t p = 0; p < partitions.size(); ++p)
    for (const auto i : partitions[p]) sums[p] += seqlens[static_cast<std::size_t>(i)];
  return sums;
}

//! The best exchange found between a heavier partition `a` and a lighter one `b`.
struct Exchange {
  int64_t score = -1;  //!< |2*delta - D|, D = sum(a) - sum(b); improving iff score < D
  std::size_t pos_a = 0;
  std::size_t pos_b = 0;  //!< position in b of the swapped item, or SIZE_MAX for a move a -> b
};

//! Finds the swap (or, with `allow_moves`, the move from a to b) whose transferred amount delta is closest to
//! D/2, among those with 0 < delta < D. Returns score -1 when none exists.
[[nodiscard]] inline Exchange best_exchange(std::span<const int64_t> seqlens, const std::vector<int64_t>& a,
                                            const std::vector<int64_t>& b, int64_t diff, bool allow_moves) {
  Exchange best;
  auto consider = [&](int64_t delta, std::size_t pa, std::size_t pb) {
    if (delta <= 0 || delta >= diff) return;
    const int64_t score = std::llabs(2 * delta - diff);
    if (best.score < 0 || score < best.score) best = Exchange{score, pa, pb};
  };
  // b's items sorted by value, to look up y ~= x - D/2 for each x of a.
  std::vector<std::pair<int64_t, std::size_t>> sorted_b(b.size());
  for (std::size_t j = 0; j < b.size(); ++j) sorted_b[j] = {seqlens[static_cast<std::size_t>(b[j])], j};
  std::sort(sorted_b.begin(), sorted_b.end());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const int64_t x = seqlens[static_cast<std::size_t>(a[i])];
    if (allow_moves && a.size() > 1) consider(x, i, SIZE_MAX);
    const int64_t target = x - diff / 2;  // the y that makes delta = x - y closest to D/2
    auto it = std::lower_bound(sorted_b.begin(), sorted_b.end(), std::pair<int64_t, std::size_t>{target, 0});
    if (it != sorted_b.end()) consider(x - it->first, i, it->second);
    if (it != sorted_b.begin()) consider(x - std::prev(it)->first, i, std::prev(it)->second);
    if (best.score == (diff & 1)) break;  // cannot do better than an exact half
  }
  return best;
}

//! Up to two items taken out of one partition: their positions in it and the sum of their lengths.
struct Combo {
  int64_t value = 0;
  std::size_t count = 0;
  std::size_t pos[2] = {0, 0};
};

//! All `r`-item combos (r = 0, 1 or 2) of `part`, sorted by value.
[[nodiscard]] inline std::vector<Combo> combos_of(std::span<const int64_t> seqlens, const std::vector<int64_t>& part,
                                                  std::size_t r) {
  std::vector<Combo> out;
  auto len = [&](std::size_t i) { return seqlens[static_cast<std::size_t>(part[i])]; };
  if (r == 0) out.push_back(Combo{});
  if (r == 1)
    for (std::size_t i = 0; i < part.size(); ++i) out.push_back(Combo{len(i), 1, {i, 0}});
  if (r == 2)
    for (std::size_t i = 0; i < part.size(); ++i)
      for (std::size_t j = i + 1; j < part.size(); ++j) out.push_back(Combo{len(i) + len(j), 2, {i, j}});
  std::sort(out.begin(), out.end(), [](const Combo& x, const Combo& y) { return x.value < y.value; });
  return out;
}

//! The best exchange of up to two items each way between a heavier partition `a` and a lighter one `b`.
struct MultiExchange {
  int64_t score = -1;  //!< |2*delta - D|; -1 when none with 0 < delta < D exists
  Combo from_a;
  Combo from_b;
};

//! Like best_exchange(), over every (r_a, r_b) in {0,1,2}^2 with r_a == r_b unless `allow_moves`, keeping
//! both partitions non-empty. Costs O(m^2 log m) for partitions of m items.
[[nodiscard]] inline MultiExchange best_multi_exchange(std::span<const int64_t> seqlens,
                                                       const std::vector<int64_t>& a, const std::vector<int64_t>& b,
                                                       int64_t diff, bool allow_moves) {
  MultiExchange best;
  for (std::size_t ra = 0; ra <= 2; ++ra) {
    for (std::size_t rb = 0; rb <= 2; ++rb) {
      if (ra + rb == 0 || (!allow_moves && ra != rb) || ra > a.size() || rb > b.size()) continue;
      if (a.size() + rb <= ra || b.size() + ra <= rb) continue;  // would empty a partition
      const auto ca = combos_of(seqlens, a, ra);
      const auto cb = combos_of(seqlens, b, rb);
      for (const auto& x : ca) {
        const int64_t target = x.value - diff / 2;
        auto it = std::lower_bound(cb.begin(), cb.end(), target,
                                   [](const Combo& c, int64_t v) { return c.value < v; });
        for (auto jt : {it, it == cb.begin() ? cb.end() : std::prev(it)}) {
          if (jt == cb.end()) continue;
          const int64_t delta = x.value - jt->value;
          if (delta <= 0 || delta >= diff) continue;
          const int64_t score = std::llabs(2 * delta - diff);
          if (best.score < 0 || score < best.score) best = MultiExchange{score, x, *jt};
        }
      }
    }
  }
  return best;
}

}  // namespace detail

//! The sum of each partition: sums[p] = sum of seqlens[i] for i in partitions[p].
[[nodiscard]] inline std::vector<int64_t> partition_sums(std::span<const int64_t> seqlens,
                                                         const Partitions& partitions) {
  for (const auto& part : partitions)
    for (const auto i : part)
      detail::check<ConfigError>(i >= 0 && i < static_cast<int64_t>(seqlens.size()),
                                 "verl::partition_sums: argument `partitions` holds item ", i,
                                 ", expected an index in [0, ", seqlens.size(), ")");
  return detail::sums_of(seqlens, partitions);
}

//! The spread of a partition: max - min of the partition sums (0 for no partitions).
[[nodiscard]] inline int64_t partition_spread(std::span<const int64_t> seqlens, const Partitions& partitions) {
  const auto sums = partition_sums(seqlens, partitions);
  if (sums.empty()) return 0;
  const auto [lo, hi] = std::minmax_element(sums.begin(), sums.end());
  return *hi - *lo;
}

//! The plain Karmarkar-Karp partition, as verl's `karmarkar_karp` (no refinement), indices sorted within each
//! partition, partitions in descending order of their sums.
//!
//! With equal_size the items, sorted by length, are cut into n/k groups of k consecutive items, each group a
//! state with one item per set; otherwise every item is a state of its own. The two states with the largest
//! spread are merged (largest set of one with the smallest of the other) until one state remains.
[[nodiscard]] inline Partitions karmarkar_karp_partitions(std::span<const int64_t> seqlens, int64_t k_partitions,
                                                          bool equal_size) {
  detail::check_partition_args("verl::karmarkar_karp_partitions", seqlens, k_partitions, equal_size);
  const auto n = static_cast<int64_t>(seqlens.size());
  const auto k = static_cast<std::size_t>(k_partitions);
  std::vector<int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return seqlens[static_cast<std::size_t>(a)] < seqlens[static_cast<std::size_t>(b)];
  });

  std::vector<detail::KKState> pool;
  pool.reserve(static_cast<std::size_t>(n));
  auto make_state = [&](std::span<const int64_t> items) {
    detail::KKState state;
    state.id = static_cast<int64_t>(pool.size());
    state.sets.resize(k);
    for (std::size_t s = 0; s < items.size(); ++s) {
      state.sets[s].sum = seqlens[static_cast<std::size_t>(items[s])];
      state.sets[s].items.push_back(items[s]);
    }
    std::stable_sort(state.sets.begin(), state.sets.end(), detail::kk_set_greater);
    pool.push_back(std::move(state));
  };
  const std::size_t group = equal_size ? k : 1;
  for (std::size_t off = 0; off < order.size(); off += group) make_state(std::span(order).subspan(off, group));

  // Max-heap on (spread, largest set, earliest creation).
  auto lower_priority = [&](std::size_t a, std::size_t b) {
    const auto& sa = pool[a];
    const auto& sb = pool[b];
    if (sa.spread() != sb.spread()) return sa.spread() < sb.spread();
    if (detail::kk_set_greater(sa.sets.front(), sb.sets.front())) return false;
    if (detail::kk_set_greater(sb.sets.front(), sa.sets.front())) return true;
    return sa.id > sb.id;
  };
  std::priority_queue<std::size_t, std::vector<std::size_t>, decltype(lower_priority)> heap(lower_priority);
  for (std::size_t s = 0; s < pool.size(); ++s) heap.push(s);
  int64_t next_id = static_cast<int64_t>(pool.size());
  while (heap.size() > 1) {
    const auto s0 = heap.top();
    heap.pop();
    const auto s1 = heap.top();
    heap.pop();
    auto& into = pool[s0].sets;
    auto& from = pool[s1].sets;
    for (std::size_t i = 0; i < k; ++i) {
      auto& dst = into[i];
      auto& src = from[k - 1 - i];
      dst.sum += src.sum;
      // Appended in order, as verl does: the item order takes part in the tie-breaks of kk_set_greater.
      dst.items.insert(dst.items.end(), src.items.begin(), src.items.end());
      src.items.clear();
      src.items.shrink_to_fit();
    }
    std::stable_sort(into.begin(), into.end(), detail::kk_set_greater);
    pool[s0].id = next_id++;
    heap.push(s0);
  }

  Partitions partitions;
  partitions.reserve(k);
  for (auto& set : pool[heap.top()].sets) {
    std::sort(set.items.begin(), set.items.end());
    partitions.push_back(std::move(set.items));
  }
  return partitions;
}

//! verl's `greedy_partition` baseline: items in their given order, each to the partition with the smallest
//! sum (with equal_size: the fewest items, then the smallest sum); ties go to the lowest partition index.
[[nodiscard]] inline Partitions greedy_partitions(std::span<const int64_t> seqlens, int64_t k_partitions,
                                                  bool equal_size) {
  detail::check_partition_args("verl::greedy_partitions", seqlens, k_partitions, equal_size);
  const auto k = static_cast<std::size_t>(k_partitions);
  Partitions partitions(k);
  std::vector<int64_t> sums(k, 0);
  for (std::size_t i = 0; i < seqlens.size(); ++i) {
    std::size_t best = 0;
    for (std::size_t p = 1; p < k; ++p) {
      const bool fewer = partitions[p].size() < partitions[best].size();
      const bool same = partitions[p].size() == partitions[best].size();
      if ((equal_size && (fewer || (same && sums[p] < sums[best]))) || (!equal_size && sums[p] < sums[best]))
        best = p;
    }
    partitions[best].push_back(static_cast<int64_t>(i));
    sums[best] += seqlens[i];
  }
  return partitions;
}

//! Improves `partitions` in place by exchanges between two partitions: a swap of one item each (keeps every
//! size), or with `allow_moves` a move of one item out of a partition holding more than one. Each exchange
//! moves an amount delta with 0 < delta < (difference of the two sums), as close to half that difference as
//! found, so both sums stay within the old [min, max]: the spread never grows and the sum of squared sums
//! strictly falls, hence the pass ends. Pairs are tried heaviest-vs-lighter first, then lightest-vs-heavier,
//! then the others; when none of those exists, exchanges of up to two items each way, in the same order (for
//! partitions of at most 96 items). Stops at such a local optimum, when the spread reaches its lower bound (0, or 1 when
//! k does not divide the total), or after `max_exchanges`. Indices are sorted within each partition on return.
inline void refine_partitions(std::span<const int64_t> seqlens, Partitions& partitions, bool allow_moves,
                              int64_t max_exchanges = -1) {
  const auto k = partitions.size();
  if (k < 2) return;
  auto sums = partition_sums(seqlens, partitions);
  const int64_t total = std::accumulate(sums.begin(), sums.end(), int64_t{0});
  const int64_t bound = total % static_cast<int64_t>(k) == 0 ? 0 : 1;
  if (max_exchanges < 0) max_exchanges = 64 * static_cast<int64_t>(seqlens.size()) + 64;
  std::vector<std::size_t> by_sum(k);
  auto apply = [&](std::size_t a, std::size_t b, const detail::Exchange& ex) {
    auto& pa = partitions[a];
    auto& pb = partitions[b];
    const int64_t x = seqlens[static_cast<std::size_t>(pa[ex.pos_a])];
    if (ex.pos_b == SIZE_MAX) {
      pb.push_back(pa[ex.pos_a]);
      pa.erase(pa.begin() + static_cast<std::ptrdiff_t>(ex.pos_a));
      sums[a] -= x;
      sums[b] += x;
    } else {
      const int64_t y = seqlens[static_cast<std::size_t>(pb[ex.pos_b])];
      std::swap(pa[ex.pos_a], pb[ex.pos_b]);
      sums[a] += y - x;
      sums[b] += x - y;
    }
  };
  constexpr std::size_t kMaxMultiItems = 96;
  auto apply_multi = [&](std::size_t a, std::size_t b, const detail::MultiExchange& ex) {
    auto take = [&](std::vector<int64_t>& part, const detail::Combo& c) {
      std::vector<int64_t> items;
      for (std::size_t t = c.count; t-- > 0;) {  // positions ascending; erase the later one first
        items.push_back(part[c.pos[t]]);
        part.erase(part.begin() + static_cast<std::ptrdiff_t>(c.pos[t]));
      }
      return items;
    };
    auto from_a = take(partitions[a], ex.from_a);
    auto from_b = take(partitions[b], ex.from_b);
    partitions[a].insert(partitions[a].end(), from_b.begin(), from_b.end());
    partitions[b].insert(partitions[b].end(), from_a.begin(), from_a.end());
    const int64_t delta = ex.from_a.value - ex.from_b.value;
    sums[a] -= delta;
    sums[b] += delta;
  };
  for (int64_t round = 0; round < max_exchanges; ++round) {
    std::iota(by_sum.begin(), by_sum.end(), std::size_t{0});
    std::stable_sort(by_sum.begin(), by_sum.end(), [&](std::size_t a, std::size_t b) { return sums[a] < sums[b]; });
    const auto lo = by_sum.front();
    const auto hi = by_sum.back();
    if (sums[hi] - sums[lo] <= bound) break;
    auto try_pair = [&](std::size_t a, std::size_t b) {  // a heavier than b
      const int64_t diff = sums[a] - sums[b];
      if (diff <= 0) return false;
      const auto ex = detail::best_exchange(seqlens, partitions[a], partitions[b], diff, allow_moves);
      if (ex.score < 0) return false;
      apply(a, b, ex);
      return true;
    };
    bool improved = false;
    // 1. The heaviest partition against each lighter one, lightest first (lowers the maximum).
    for (std::size_t j = 0; j + 1 < k && !improved; ++j) improved = try_pair(hi, by_sum[j]);
    // 2. The lightest partition against each heavier one, heaviest first (raises the minimum).
    for (std::size_t j = k - 1; j-- > 1 && !improved;) improved = try_pair(by_sum[j], lo);
    // 3. Any other pair: keeps the spread but lowers the sum of squares, which can unlock 1. and 2.
    for (std::size_t ia = k - 1; ia-- > 1 && !improved;)
      for (std::size_t ib = 1; ib < ia && !improved; ++ib) improved = try_pair(by_sum[ia], by_sum[ib]);
    // 4. Stuck: exchanges of up to two items each way between any two partitions (extremes first), for
    //    partitions small enough that the O(m^2) pairs are cheap (the small-batch cases where it matters).
    auto try_multi = [&](std::size_t a, std::size_t b) {
      const int64_t diff = sums[a] - sums[b];
      if (diff <= 0 || partitions[a].size() > kMaxMultiItems || partitions[b].size() > kMaxMultiItems) return false;
      const auto ex = detail::best_multi_exchange(seqlens, partitions[a], partitions[b], diff, allow_moves);
      if (ex.score < 0) return false;
      apply_multi(a, b, ex);
      return true;
    };
    for (std::size_t j = 0; j + 1 < k && !improved; ++j) improved = try_multi(hi, by_sum[j]);
    for (std::size_t j = k - 1; j-- > 1 && !improved;) improved = try_multi(by_sum[j], lo);
    for (std::size_t ia = k - 1; ia-- > 1 && !improved;)
      for (std::size_t ib = 1; ib < ia && !improved; ++ib) improved = try_multi(by_sum[ia], by_sum[ib]);
    if (!improved) break;
  }
  for (auto& part : partitions) std::sort(part.begin(), part.end());
}

//! Partitions items 0..n-1 into `k_partitions` groups of balanced total length: verl's
//! `get_seqlen_balanced_partitions` (Karmarkar-Karp) plus refine_partitions().
//!
//! \param seqlens the length (or workload) of each item, >= 0.
//! \param k_partitions the number of groups, 1 <= k_partitions <= n.
//! \param equal_size every group gets exactly n / k_partitions items (n must be divisible by k_partitions);
//!        otherwise group sizes vary but every group is non-empty.
//! \returns k_partitions lists of indices, each index exactly once, sorted within each list. Deterministic:
//!          the same input gives the same output. Its spread is at most that of karmarkar_karp_partitions().
//! \throws ConfigError when a precondition fails.
[[nodiscard]] inline Partitions get_seqlen_balanced_partitions(std::span<const int64_t> seqlens,
                                                               int64_t k_partitions, bool equal_size) {
  detail::check_partition_args("verl::get_seqlen_balanced_partitions", seqlens, k_partitions, equal_size);
  auto partitions = karmarkar_karp_partitions(seqlens, k_partitions, equal_size);
  if (!equal_size) {
    // Zero-length items can leave a set empty; give it the shortest item of the most populated partition.
    for (auto& part : partitions) {
      if (!part.empty()) continue;
      auto donor = std::max_element(partitions.begin(), partitions.end(),
                                    [](const auto& a, const auto& b) { return a.size() < b.size(); });
      auto shortest = std::min_element(donor->begin(), donor->end(), [&](int64_t a, int64_t b) {
        return seqlens[static_cast<std::size_t>(a)] < seqlens[static_cast<std::size_t>(b)];
      });
      part.push_back(*shortest);
      donor->erase(shortest);
    }
  }
  refine_partitions(seqlens, partitions, /*allow_moves=*/!equal_size);
  // A second start from verl's greedy_partition, refined the same way; keep the better (KK on ties). This is
  // cheap next to KK and makes the result never worse than either of verl's two methods.
  auto greedy = greedy_partitions(seqlens, k_partitions, equal_size);
  if (std::all_of(greedy.begin(), greedy.end(), [](const auto& p) { return !p.empty(); })) {
    refine_partitions(seqlens, greedy, /*allow_moves=*/!equal_size);
    if (partition_spread(seqlens, greedy) < partition_spread(seqlens, partitions)) partitions = std::move(greedy);
  }
  return partitions;
}

//! The order in which to reorder a batch so that rank r gets the r-th of `k_partitions` equal contiguous
//! chunks, and the chunks are balanced by length: the partitions of
//! get_seqlen_balanced_partitions(seqlens, k_partitions, /*equal_size=*/true), concatenated.
//!
//! \returns (n,) int64 CPU tensor, a permutation of 0..n-1.
//! \throws ConfigError when 1 <= k_partitions <= n or n % k_partitions == 0 fails, or a length is negative.
[[nodiscard]] inline at::Tensor balanced_permutation(std::span<const int64_t> seqlens, int64_t k_partitions) {
  detail::check_partition_args("verl::balanced_permutation", seqlens, k_partitions, /*equal_size=*/true);
  const auto partitions = get_seqlen_balanced_partitions(seqlens, k_partitions, /*equal_size=*/true);
  auto perm = at::empty({static_cast<int64_t>(seqlens.size())}, at::kLong);  // (n,) int64
  auto* out = perm.data_ptr<int64_t>();
  for (const auto& part : partitions) out = std::copy(part.begin(), part.end(), out);
  return perm;
}

//! balanced_permutation() for lengths held in a tensor, e.g. `attention_mask.sum(-1)`.
//!
//! \param seqlens (n,) integer tensor on any device (copied to the host).
//! \throws ShapeError when `seqlens` is not a 1-D integer tensor; ConfigError as the span overload.
[[nodiscard]] inline at::Tensor balanced_permutation(const at::Tensor& seqlens, int64_t k_partitions) {
  detail::check<ShapeError>(seqlens.defined(), "verl::balanced_permutation: argument `seqlens` is undefined, "
                            "expected a 1-D integer tensor of sequence lengths (n,)");
  detail::check<ShapeError>(seqlens.dim() == 1 && at::isIntegralType(seqlens.scalar_type(), /*includeBool=*/false),
                            "verl::balanced_permutation: argument `seqlens` has shape ", seqlens.sizes(),
                            " and dtype ", seqlens.scalar_type(),
                            ", expected a 1-D integer tensor of sequence lengths (n,)");
  const auto host = seqlens.to(at::kCPU, at::kLong).contiguous();  // (n,) int64
  return balanced_permutation(std::span<const int64_t>(host.data_ptr<int64_t>(), host.numel()), k_partitions);
}

}  // namespace verl
