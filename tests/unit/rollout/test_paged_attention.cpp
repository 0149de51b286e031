// verl::rollout::paged_attention and write_kv (include/verl/rollout/paged_attention.hpp) against an
// independent float64 reference: each sequence's keys/values kept contiguous in the test, softmax(Q K^T * scale)
// V with the causal mask offset by the cached length (and the sliding window of transformers'
// sliding_window_overlay: i - w < j <= i), GQA by repeat_interleave of the KV heads (transformers' repeat_kv).
// Pools have shuffled, non-contiguous block ids, blocks shared by two sequences (prefix sharing), and every
// slot no sequence may read poisoned with NaN, so reading one shows up in the output.
#include "catch_torch.hpp"

#include "error_of.hpp"
#include "verl/rollout/paged_attention.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace test_paged_attention {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using namespace verl::rollout;
using torch::indexing::Slice;
using verl::test::error_of;

namespace {

struct SeqSpec {
  std::int64_t ctx, rows;  // context length (including the new rows) and new query rows
};

struct Case {
  std::int64_t kv_heads = 2, groups = 1, head_dim = 64, block_size = 16, window = 0;
  std::vector<SeqSpec> seqs;
  std::int64_t shared_blocks = 0;  // leading blocks sequence 1 shares with sequence 0 (prefix sharing)
};

// One step's inputs plus the float64 contiguous K/V of each sequence (the values the pool holds, widened).
struct Setup {
  at::Tensor q, key_cache, value_cache;  // (N,H,D), (num_blocks,Hkv,bs,D) x2
  PagedAttentionBatch batch;
  std::vector<at::Tensor> keys, values;  // per sequence (ctx,Hkv,D) float64
  double scale = 0;
};

Setup make_setup(const Case& c, at::ScalarType dtype, std::uint64_t seed) {
  torch::manual_seed(static_cast<std::int64_t>(seed));
  std::mt19937_64 rng(seed);
  const std::int64_t s = static_cast<std::int64_t>(c.seqs.size()), bs = c.block_size, d = c.head_dim;
  const std::int64_t heads = c.kv_heads * c.groups;
  std::vector<std::int64_t> nblocks(static_cast<std::size_t>(s));
  std::int64_t total = 0, n = 0, max_blocks = 0;
  for (std::int64_t i = 0; i < s; ++i) {
    nblocks[i] = (c.seqs[i].ctx + bs - 1) / bs;
    total += nblocks[i];
    n += c.seqs[i].rows;
    max_blocks = std::max(max_blocks, nblocks[i]);
  }
  const std::int64_t num_blocks = total + 5;  // spare blocks nobody owns
  std::vector<std::int64_t> ids(static_cast<std::size_t>(num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);

  Setup st;
  const auto f64 = torch::TensorOptions().dtype(torch::kFloat64);
  st.batch.sliding_window = c.window;
  st.batch.block_tables = torch::full({s, max_blocks + 2}, -1, torch::kLong);  // 2 unused columns of -1
  st.batch.context_lens = torch::empty({s}, torch::kLong);
  st.batch.query_starts = torch::zeros({s + 1}, torch::kLong);
  // NaN everywhere first: only the slots written below hold numbers.
  st.key_cache = torch::full({num_blocks, c.kv_heads, bs, d}, NAN, f64).to(dtype);
  st.value_cache = torch::full({num_blocks, c.kv_heads, bs, d}, NAN, f64).to(dtype);
  std::size_t next = 0;
  for (std::int64_t i = 0; i < s; ++i) {
    const auto [ctx, rows] = c.seqs[i];
    st.batch.context_lens[i] = ctx;
    st.batch.query_starts[i + 1] = st.batch.query_starts[i].item<std::int64_t>() + rows;
    for (std::int64_t b = 0; b < nblocks[i]; ++b) {
      const bool shared = i == 1 && b < c.shared_blocks;
      st.batch.block_tables.index_put_({i, b}, shared ? st.batch.block_tables[0][b].item<std::int64_t>() : ids[next++]);
    }
    // Values rounded to the storage dtype first, so the reference sees exactly what the pool holds.
    auto k = torch::randn({ctx, c.kv_heads, d}, f64).to(dtype).to(torch::kFloat64);  // (ctx,Hkv,D)
    auto v = torch::randn({ctx, c.kv_heads, d}, f64).to(dtype).to(torch::kFloat64);  // (ctx,Hkv,D)
    if (i == 1 && c.shared_blocks > 0) {  // the shared prefix holds sequence 0's keys and values
      const std::int64_t p = c.shared_blocks * bs;
      k.index_put_({Slice(0, p)}, st.keys[0].index({Slice(0, p)}));
      v.index_put_({Slice(0, p)}, st.values[0].index({Slice(0, p)}));
    }
    const auto pos = torch::arange(ctx, torch::kLong);                                      // (ctx)
    const auto blk = st.batch.block_tables[i].index_select(0, pos.div(bs, "floor"));       // (ctx)
    st.key_cache.index_put_({blk, Slice(), pos.remainder(bs)}, k.to(dtype));
    st.value_cache.index_put_({blk, Slice(), pos.remainder(bs)}, v.to(dtype));
    st.keys.push_back(k);
    st.values.push_back(v);
  }
  if (c.window > 0) {  // blocks wholly before every row's window are never read: free them (-1)
    for (std::int64_t i = 0; i < s; ++i) {
      const std::int64_t first = std::max<std::int64_t>(0, c.seqs[i].ctx - c.seqs[i].rows - c.window + 1);
      const std::int64_t shared_until = i == 0 ? c.shared_blocks : 0;  // sequence 1 still reads shared blocks
      for (std::int64_t b = 0; b < first / bs; ++b)
        if (b >= shared_until) st.batch.block_tables.index_put_({i, b}, -1);
    }
  }
  st.q = torch::randn({n, heads, d}, f64).to(dtype);  // (N,H,D)
  st.scale = 1.0 / std::sqrt(static_cast<double>(d));
  return st;
}

// softmax(Q K^T * scale + mask) V per sequence in float64, from the contiguous K/V.
at::Tensor reference(const Setup& st, std::int64_t groups) {
  const auto q = st.q.to(torch::kFloat64);
  std::vector<at::Tensor> outs;
  for (std::size_t i = 0; i < st.keys.size(); ++i) {
    const std::int64_t q0 = st.batch.query_starts[i].item<std::int64_t>();
    const std::int64_t n = st.batch.query_starts[i + 1].item<std::int64_t>() - q0;
    const std::int64_t ctx = st.keys[i].size(0);
    const auto qi = q.index({Slice(q0, q0 + n)}).transpose(0, 1);                               // (H,n,D)
    const auto k = st.keys[i].transpose(0, 1).repeat_interleave(groups, 0);                     // (H,ctx,D)
    const auto v = st.values[i].transpose(0, 1).repeat_interleave(groups, 0);                   // (H,ctx,D)
    const auto qpos = torch::arange(ctx - n, ctx, torch::kLong).unsqueeze(1);                   // (n,1)
    const auto kpos = torch::arange(ctx, torch::kLong).unsqueeze(0);                            // (1,ctx)
    auto allowed = kpos <= qpos;                                                                // (n,ctx)
    if (st.batch.sliding_window > 0) allowed = allowed & (kpos > qpos - st.batch.sliding_window);
    const auto scores = torch::matmul(qi, k.transpose(1, 2)) * st.scale;                        // (H,n,ctx)
    const auto p = scores.masked_fill(allowed.logical_not(), -INFINITY).softmax(-1);             // (H,n,ctx)
    outs.push_back(torch::matmul(p, v).transpose(0, 1));                                         // (n,H,D)
  }
  return torch::cat(outs, 0);  // (N,H,D)
}

at::Tensor run(const Setup& st, PagedAttentionPath path) {
  PagedAttentionOptions o;
  o.path = path;
  return paged_attention(st.q, st.key_cache, st.value_cache, st.batch, st.scale, o);
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

// A mixed step: two decode rows with long contexts sharing a prefix, a chunked prefill (5 new rows after 40
// cached), a fresh 16-row prefill (kernel under `automatic`), a fresh 23-row prefill (SDPA under `automatic`)
// and a 20-row chunk after 30 cached (SDPA, offset mask).
Case mixed_case(std::int64_t bs, std::int64_t groups, std::int64_t d, std::int64_t window) {
  Case c;
  c.groups = groups;
  c.head_dim = d;
  c.block_size = bs;
  c.window = window;
  c.seqs = {{300, 1}, {77, 1}, {45, 5}, {16, 16}, {23, 23}, {50, 20}};
  c.shared_blocks = 64 / bs;  // the first 64 positions of sequences 0 and 1
  return c;
}

constexpr PagedAttentionPath kPaths[] = {PagedAttentionPath::automatic, PagedAttentionPath::kernel,
                                         PagedAttentionPath::gather_sdpa};
const char* path_name(PagedAttentionPath p) {
  return p == PagedAttentionPath::automatic ? "automatic" : p == PagedAttentionPath::kernel ? "kernel" : "gather_sdpa";
}

}  // namespace

TEST_CASE("paged_attention matches the float64 reference on mixed steps (float32, float64, every path)",
          "[rollout][paged_attention]") {
  std::uint64_t seed = 1;
  for (const std::int64_t bs : {1, 16}) {
    for (const std::int64_t groups : {1, 2, 7}) {
      for (const std::int64_t d : {64, 128}) {
        for (const std::int64_t window : {0, 7, 40}) {
          const auto c = mixed_case(bs, groups, d, window);
          for (const auto dtype : {torch::kFloat32, torch::kFloat64}) {
            const auto st = make_setup(c, dtype, seed++);
            const auto ref = reference(st, groups);
            // float32: inputs are exact in both; the error is float32 rounding of scores, exp and sums over
            // <= 300 keys of O(1) terms. float64: the same in double.
            const double tol = dtype == torch::kFloat32 ? 2e-6 : 1e-12;
            at::Tensor first;
            for (const auto path : kPaths) {
              INFO("bs " << bs << " groups " << groups << " D " << d << " window " << window << " dtype " << dtype
                         << " path " << path_name(path));
              const auto out = run(st, path);
              REQUIRE(out.sizes() == st.q.sizes());
              REQUIRE(out.scalar_type() == dtype);
              CHECK(max_abs_diff(out, ref) <= tol);
              if (!first.defined()) first = out;
              CHECK(max_abs_diff(out, first) <= tol);  // the paths agree with each other on the same inputs
            }
          }
        }
      }
    }
  }
}

TEST_CASE("paged_attention in bfloat16 and float16 against the float32 result", "[rollout][paged_attention]") {
  const auto c = mixed_case(16, 7, 64, 0);
  for (const auto dtype : {torch::kBFloat16, torch::kHalf}) {
    const auto st = make_setup(c, dtype, 99);
    // The float32 result on the same (already rounded) values: what a float32 model would compute.
    Setup st32 = st;
    st32.q = st.q.to(torch::kFloat32);
    st32.key_cache = st.key_cache.to(torch::kFloat32);
    st32.value_cache = st.value_cache.to(torch::kFloat32);
    const auto ref = run(st32, PagedAttentionPath::kernel).to(torch::kFloat64);
    REQUIRE(max_abs_diff(ref, reference(st, 7)) <= 2e-6);
    // The kernel widens the stored values exactly and runs the float32 kernel's arithmetic, rounding once at the
    // end: its result is the float32 kernel's result rounded to the dtype, bit for bit, hence within the unit
    // roundoff (2^-8 relative for bfloat16's 8-bit significand, 2^-11 for half's 11 bits; plus 2^-25 absolute
    // for half's subnormals, whose spacing is 2^-24) of the float32 result.
    const auto kernel = run(st, PagedAttentionPath::kernel);
    CHECK(torch::equal(kernel, ref.to(torch::kFloat32).to(dtype)));
    const double u = dtype == torch::kBFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    CHECK(((kernel.to(torch::kFloat64) - ref).abs() - u * ref.abs()).max().item<double>() <= std::ldexp(1.0, -25));
    // SDPA rounds its intermediates (scores, probabilities) to the storage dtype: within 16 ulps of 1.
    const double sdpa_tol = 16 * (dtype == torch::kBFloat16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11));
    INFO("dtype " << dtype);
    CHECK(max_abs_diff(run(st, PagedAttentionPath::gather_sdpa), ref) <= sdpa_tol);
    CHECK(max_abs_diff(run(st, PagedAttentionPath::automatic), ref) <= sdpa_tol);
  }
}

TEST_CASE("paged_attention: threshold option, empty sequences, many threads of work", "[rollout][paged_attention]") {
  Case c;
  c.groups = 7;
  c.block_size = 16;
  c.seqs = {{40, 0}, {1, 1}, {33, 33}, {4100, 1}, {17, 17}};  // an empty sequence, a 1-token context, ...
  const auto st = make_setup(c, torch::kFloat32, 5);
  const auto ref = reference(st, 7);
  for (const std::int64_t limit : {0, 1, 16, 17, 1000}) {
    PagedAttentionOptions o;
    o.kernel_max_query_rows = limit;
    INFO("kernel_max_query_rows " << limit);
    CHECK(max_abs_diff(paged_attention(st.q, st.key_cache, st.value_cache, st.batch, st.scale, o), ref) <= 2e-6);
  }
  // A non-contiguous pool view (every other block) takes SDPA under `automatic` and is copied for `kernel`.
  Setup wide = st;
  const auto nb = st.key_cache.size(0);
  wide.key_cache = torch::stack({st.key_cache, torch::full_like(st.key_cache, NAN)}, 1).select(1, 0);
  wide.value_cache = torch::stack({st.value_cache, torch::full_like(st.value_cache, NAN)}, 1).select(1, 0);
  REQUIRE(!wide.key_cache.is_contiguous());
  REQUIRE(wide.key_cache.size(0) == nb);
  for (const auto path : kPaths) CHECK(max_abs_diff(run(wide, path), ref) <= 2e-6);
}

TEST_CASE("write_kv writes each row at its slot and nothing else (CPU copy and indexed paths)",
          "[rollout][paged_attention]") {
  torch::manual_seed(3);
  const std::int64_t nb = 9, hkv = 3, bs = 4, d = 8, n = 11;
  for (const bool contiguous : {true, false}) {
    for (const auto dtype : {torch::kFloat32, torch::kBFloat16}) {
      INFO("contiguous " << contiguous << " dtype " << dtype);
      // The non-contiguous pool is a view of every other D-slice of a wider tensor: write_kv's indexed path.
      auto k_base = torch::zeros({nb, hkv, bs, contiguous ? d : 2 * d}, dtype);
      auto v_base = torch::zeros({nb, hkv, bs, contiguous ? d : 2 * d}, dtype);
      auto kc = k_base.narrow(3, 0, d), vc = v_base.narrow(3, 0, d);
      REQUIRE(kc.is_contiguous() == contiguous);
      const auto slots = torch::randperm(nb * bs, torch::kLong).narrow(0, 0, n);  // (n) distinct slots
      const auto k = torch::randn({n, hkv, d}).to(dtype), v = torch::randn({n, hkv, d}).to(dtype);
      write_kv(kc, vc, k, v, slots);
      const auto blk = slots.div(bs, "floor"), off = slots.remainder(bs);
      CHECK(torch::equal(kc.index({blk, Slice(), off}), k));
      CHECK(torch::equal(vc.index({blk, Slice(), off}), v));
      // Every other slot is still zero: n slots x Hkv x D written values in each cache.
      CHECK(kc.ne(0).sum().item<std::int64_t>() == k.ne(0).sum().item<std::int64_t>());
      CHECK(vc.ne(0).sum().item<std::int64_t>() == v.ne(0).sum().item<std::int64_t>());
      if (!contiguous) CHECK(k_base.narrow(3, d, d).ne(0).sum().item<std::int64_t>() == 0);
      // Round trip: attention over what write_kv stored equals attention over the rows themselves. One sequence
      // whose n positions are the slots in order, one query row at the last position.
      if (dtype == torch::kFloat32 && contiguous) {
        PagedAttentionBatch b;
        // Slot i must be position i: use a table of the slots' blocks only where slot = block*bs + position%bs.
        auto kc2 = torch::zeros({nb, hkv, bs, d}), vc2 = torch::zeros({nb, hkv, bs, d});
        const auto table = torch::randperm(nb, torch::kLong).narrow(0, 0, (n + bs - 1) / bs);  // (ceil(n/bs))
        const auto pos = torch::arange(n, torch::kLong);
        write_kv(kc2, vc2, k, v, table.index_select(0, pos.div(bs, "floor")) * bs + pos.remainder(bs));
        b.block_tables = table.unsqueeze(0);
        b.context_lens = torch::tensor({n}, torch::kLong);
        b.query_starts = torch::tensor({std::int64_t{0}, std::int64_t{1}}, torch::kLong);
        const auto q = torch::randn({1, hkv, d});
        const auto out = paged_attention(q, kc2, vc2, b, 0.5);  // (1,Hkv,D)
        const auto p = (torch::einsum("hd,nhd->hn", {q[0], k}) * 0.5).softmax(-1);  // (Hkv,n)
        CHECK(max_abs_diff(out[0], torch::einsum("hn,nhd->hd", {p, v})) <= 2e-6);
      }
    }
  }
}

TEST_CASE("paged_attention and write_kv reject bad inputs with messages naming them", "[rollout][paged_attention]") {
  Case c;
  c.groups = 2;
  c.block_size = 4;
  c.seqs = {{10, 1}, {6, 3}};
  const auto st = make_setup(c, torch::kFloat32, 7);
  using verl::ShapeError;
  auto attn = [&](const at::Tensor& q, const at::Tensor& kc, const at::Tensor& vc, const PagedAttentionBatch& b) {
    return error_of<ShapeError>([&] { (void)paged_attention(q, kc, vc, b, 1.0); });
  };
  const auto& b = st.batch;
  CHECK_THAT(attn(st.q[0], st.key_cache, st.value_cache, b), Catch::Contains("`q` must be (N,H,D), got shape [4, 64]"));
  CHECK_THAT(attn(st.q, st.key_cache[0], st.value_cache, b), Catch::Contains("`key_cache` must be (num_blocks,Hkv,block_size,D)"));
  CHECK_THAT(attn(st.q, st.key_cache, st.value_cache.narrow(0, 0, 2), b),
             Catch::Contains("`value_cache` has shape [2, 2, 4, 64], expected the shape of `key_cache`"));
  CHECK_THAT(attn(st.q.to(torch::kLong), st.key_cache, st.value_cache, b), Catch::Contains("`q` has dtype Long, expected a floating dtype"));
  CHECK_THAT(attn(st.q.to(torch::kDouble), st.key_cache, st.value_cache, b), Catch::Contains("expected one dtype"));
  CHECK_THAT(attn(st.q.narrow(2, 0, 32), st.key_cache, st.value_cache, b),
             Catch::Contains("`q` has head dim 32 but `key_cache` has 64"));
  CHECK_THAT(attn(st.q.narrow(1, 0, 3), st.key_cache, st.value_cache, b),
             Catch::Contains("`q` has 3 heads and the cache 2 KV heads, expected H a positive multiple of Hkv"));
  {
    auto bad = b;
    bad.block_tables = b.block_tables.to(torch::kInt);
    CHECK_THAT(attn(st.q, st.key_cache, st.value_cache, bad), Catch::Contains("`batch.block_tables` must be a (S,max_blocks) int64 CPU tensor"));
    bad = b;
    bad.context_lens = b.context_lens.narrow(0, 0, 1);
    CHECK_THAT(attn(st.q, st.key_cache, st.value_cache, bad), Catch::Contains("`batch.context_lens` must be a (S) = (2) int64 CPU tensor"));
    bad = b;
    bad.query_starts = b.query_starts.narrow(0, 0, 2);
    CHECK_THAT(attn(st.q, st.key_cache, st.value_cache, bad), Catch::Contains("`batch.query_starts` must be a (S+1) = (3) int64 CPU tensor"));
    bad = b;
    bad.query_starts = torch::tensor({std::int64_t{0}, std::int64_t{1}, std::int64_t{3}});
    CHECK_THAT(attn(st.q, st.key_cache, st.value_cache, bad),
               Catch::Contains("`batch.query_starts` runs from 0 to 3, expected 0 to N = 4"));
    bad.query_starts = torch::tensor({std::int64_t{0}, std::int64_t{5}, std::int64_t{4}});
    CHECK_THAT(attn(st.q, st.key_cache, st.value_cache, bad),
               Catch::Contains("`batch.query_starts` decreases at sequence 1 (5 then 4)"));
    bad = b;
    bad.context_lens = torch::tensor({std::int64_t{10}, std::int64_t{2}});
    CHECK_THAT(attn(st.q, st.key_cache, st.value_cache, bad),
               Catch::Contains("sequence 1 has 3 query rows but context length 2, expected context_lens[s] >= its query rows"));
    bad = b;
    bad.block_tables = b.block_tables.narrow(1, 0, 2);
    CHECK_THAT(attn(st.q, st.key_cache, st.value_cache, bad),
               Catch::Contains("sequence 0 has context length 10, which needs 3 blocks of block_size 4, but "
                               "`batch.block_tables` has only 2 entries per sequence"));
    bad = b;
    bad.block_tables = b.block_tables.clone();
    bad.block_tables.index_put_({1, 1}, st.key_cache.size(0));
    CHECK_THAT(attn(st.q, st.key_cache, st.value_cache, bad),
               Catch::Contains("sequence 1: block table entry 1 is " + std::to_string(st.key_cache.size(0)) +
                               ", expected a block id in [0, " + std::to_string(st.key_cache.size(0)) + ")"));
    bad.block_tables.index_put_({1, 1}, -1);
    CHECK_THAT(attn(st.q, st.key_cache, st.value_cache, bad), Catch::Contains("sequence 1: block table entry 1 is -1"));
    bad = b;
    bad.sliding_window = -1;
    CHECK_THAT(error_of<verl::ConfigError>([&] { (void)paged_attention(st.q, st.key_cache, st.value_cache, bad, 1.0); }),
               Catch::Contains("`batch.sliding_window` is -1, expected 0 (full causal attention) or a window >= 1"));
  }
  {
    // A floating dtype the kernel lacks (float8) cannot be forced onto the kernel.
    PagedAttentionOptions o;
    o.path = PagedAttentionPath::kernel;
    const auto f8 = torch::kFloat8_e4m3fn;
    CHECK_THAT(error_of<ShapeError>([&] {
                 (void)paged_attention(st.q.to(f8), st.key_cache.to(f8), st.value_cache.to(f8), b, 1.0, o);
               }),
               Catch::Contains("the CPU kernel path was requested for CPUFloat8_e4m3fnType on cpu, expected CPU "
                               "tensors of float32, float64, bfloat16 or float16"));
  }

  auto wkv = [&](at::Tensor kc, at::Tensor vc, const at::Tensor& k, const at::Tensor& v, const at::Tensor& slots) {
    return error_of<ShapeError>([&] { write_kv(kc, vc, k, v, slots); });
  };
  auto kc = torch::zeros({3, 2, 4, 8}), vc = torch::zeros({3, 2, 4, 8});
  const auto k = torch::ones({2, 2, 8}), slots = torch::tensor({std::int64_t{0}, std::int64_t{11}});
  CHECK(wkv(kc, vc, k, k, slots).empty());
  CHECK_THAT(wkv(kc[0], vc, k, k, slots), Catch::Contains("verl::rollout::write_kv: `key_cache` must be (num_blocks,Hkv,block_size,D)"));
  CHECK_THAT(wkv(kc, vc.narrow(0, 0, 1), k, k, slots), Catch::Contains("`value_cache` has shape [1, 2, 4, 8], expected the shape of `key_cache`"));
  CHECK_THAT(wkv(kc, vc, k, k, slots.to(torch::kInt)), Catch::Contains("`slots` must be a (N) int64 tensor"));
  CHECK_THAT(wkv(kc, vc, k.narrow(2, 0, 4), k, slots), Catch::Contains("`k` has shape [2, 2, 4], expected (N,Hkv,D) = (2,2,8)"));
  CHECK_THAT(wkv(kc, vc, k, k.narrow(1, 0, 1), slots), Catch::Contains("`v` has shape [2, 1, 8], expected the shape of `k`"));
  CHECK_THAT(wkv(kc, vc, k.to(torch::kDouble), k, slots), Catch::Contains("must share one dtype and device"));
  CHECK_THAT(wkv(kc, vc, k, k, torch::tensor({std::int64_t{0}, std::int64_t{12}})),
             Catch::Contains("slot 12 (row 1) is out of range, expected slots in [0, num_blocks * block_size = 12)"));
  CHECK_THAT(wkv(kc, vc, k, k, torch::tensor({std::int64_t{-1}, std::int64_t{2}})), Catch::Contains("slot -1 (row 0) is out of range"));
  // The indexed path (a non-contiguous pool) checks the range too.
  auto wide = torch::zeros({3, 2, 4, 16});
  CHECK_THAT(wkv(wide.narrow(3, 0, 8), wide.narrow(3, 8, 8), k, k, torch::tensor({std::int64_t{5}, std::int64_t{12}})),
             Catch::Contains("slot 12 is out of range, expected slots in [0, num_blocks * block_size = 12)"));
  CHECK(wide.eq(0).all().item<bool>());  // nothing was written before the error
}

}  // namespace test_paged_attention
