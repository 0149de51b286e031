// verl::models::linear_log_probs (include/verl/models/log_probs.hpp) against the naive path of verl 0.7.1 +
// transformers: logits = hidden @ weight^T (lm_head), logits / T, log_softmax + gather
// (verl/utils/torch_functional.py logprobs_from_logits) and logsumexp(z) - sum(softmax(z) z)
// (entropy_from_logits), computed here with plain ATen ops on the full logits; gradients against autograd
// through that path; bf16/half; chunking edge cases; errors; bounded peak memory.
#include "catch_torch.hpp"

#include "verl/models/log_probs.hpp"

#include <torch/utils.h>

#include <cmath>
#include <fstream>
#include <functional>
#include <string>

namespace test_log_probs {  // one namespace per file: a unity build (tests/CMakeLists.txt) may join files

using verl::models::linear_log_probs;
using verl::models::LinearLogProbOptions;

namespace {

struct Naive {
  torch::Tensor log_probs, entropy;
};

// The reference: the full (N,V) logits in the input dtype, divided by T in the input dtype, then widened to
// `acc` (float32, or float64) for log_softmax / entropy, as verl's actor does after lm_head.
Naive naive(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets, double t,
            torch::ScalarType acc) {
  const auto logits = torch::mm(hidden, weight.t());                         // (N,V) input dtype
  const auto z = (t == 1.0 ? logits : logits / t).to(acc);                   // (N,V)
  Naive out;
  out.log_probs = z.log_softmax(-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1);  // (N,)
  out.entropy = z.logsumexp(-1) - (z.softmax(-1) * z).sum(-1);                       // (N,)
  return out;
}

struct Problem {
  torch::Tensor hidden, weight, targets;  // (N,H), (V,H), (N,)
};

// Logits of scale ~`scale`: hidden and weight entries N(0,1) / H^(1/4) * sqrt(scale). Targets random, with the
// first at 0 and the last at V-1 (the boundary ids).
Problem make_problem(std::int64_t n, std::int64_t h, std::int64_t v, double scale, torch::ScalarType dtype,
                     std::uint64_t seed) {
  torch::manual_seed(seed);
  const double s = std::sqrt(scale) / std::pow(static_cast<double>(h), 0.25);
  Problem p;
  p.hidden = (torch::randn({n, h}, torch::kFloat64) * s).to(dtype);
  p.weight = (torch::randn({v, h}, torch::kFloat64) * s).to(dtype);
  p.targets = torch::randint(0, v, {n}, torch::kLong);
  if (n > 0) {
    p.targets[0] = 0;
    p.targets[n - 1] = v - 1;
  }
  return p;
}

LinearLogProbOptions opts(double t, bool entropy, std::int64_t chunk, std::int64_t vocab_block = 0) {
  LinearLogProbOptions o;
  o.temperature = t;
  o.compute_entropy = entropy;
  o.chunk_tokens = chunk;
  o.vocab_block = vocab_block;
  return o;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  const auto a64 = a.to(torch::kFloat64), b64 = b.to(torch::kFloat64);
  return ((a64 - b64).norm() / b64.norm()).item<double>();
}

// Peak resident memory of `fn` beyond the resident memory before it: /proc/self/clear_refs "5" resets VmHWM
// (Linux >= 4.0). Returns -1 where that is not possible.
long long peak_rss_delta_bytes(const std::function<void()>& fn) {
  auto read_kb = [](const std::string& key) -> long long {
    std::ifstream in("/proc/self/status");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(key, 0) == 0) return std::stoll(line.substr(key.size()));
    }
    return -1;
  };
  {
    std::ofstream clear("/proc/self/clear_refs");
    if (!clear) return -1;
    clear << "5";
    if (!clear.flush()) return -1;
  }
  const long long before = read_kb("VmRSS:");
  fn();
  const long long peak = read_kb("VmHWM:");
  if (before < 0 || peak < 0) return -1;
  return (peak - before) * 1024;
}

}  // namespace

TEST_CASE("linear_log_probs matches the naive float32 and float64 references", "[models][log_probs]") {
  // V = 1003: 125 vectors of 8 plus a tail of 3; V = 5: tail only; V = 16: no tail. N = 37 with chunks that
  // divide it (37, 1), that do not (5, 8), and larger than N (64, and 0 = auto: one chunk here). float32 on
  // CPU runs the vocabulary-blocked path: blocks of 512 (0), 1 (every column its own block: the running
  // maximum changes often), 7 (tails only) and 16 (vectors only), and 1003 (one block).
  for (std::int64_t v : {1003, 5, 16}) {
    for (double scale : {1.0, 25.0}) {
      const auto p = make_problem(37, 24, v, scale, torch::kFloat32, 1000 + v);
      for (double t : {1.0, 0.7, 1.9}) {
        const auto ref32 = naive(p.hidden, p.weight, p.targets, t, torch::kFloat32);
        const auto ref64 = naive(p.hidden.to(torch::kFloat64), p.weight.to(torch::kFloat64), p.targets, t, torch::kFloat64);
        for (std::int64_t chunk : {0, 1, 5, 8, 37, 64}) {
         for (std::int64_t block : {0, 1, 7, 16, 1003}) {
          if (block == 1 && chunk != 0 && chunk != 5) continue;  // the slowest case, on two chunkings
          INFO("V=" << v << " scale=" << scale << " T=" << t << " chunk=" << chunk << " vocab_block=" << block);
          const auto r = linear_log_probs(p.hidden, p.weight, p.targets, opts(t, true, chunk, block));
          REQUIRE(r.log_probs.scalar_type() == torch::kFloat32);
          REQUIRE(r.entropy.scalar_type() == torch::kFloat32);
          REQUIRE(r.log_probs.sizes() == torch::IntArrayRef{37});
          // float32 ops on float32 logits, ~1e-6 relative at |log p| up to ~50 (scale 25).
          CHECK(max_abs_diff(r.log_probs, ref32.log_probs) < 2e-5 * scale);
          CHECK(max_abs_diff(r.entropy, ref32.entropy) < 2e-5 * scale);
          // float64 logits differ from float32 ones by the float32 GEMM's rounding, ~1e-7 |logit|.
          CHECK(max_abs_diff(r.log_probs, ref64.log_probs) < 3e-5 * scale);
          CHECK(max_abs_diff(r.entropy, ref64.entropy) < 3e-5 * scale);
          // Without entropy: the same log-probs, no entropy tensor.
          const auto lp_only = linear_log_probs(p.hidden, p.weight, p.targets, opts(t, false, chunk, block));
          CHECK_FALSE(lp_only.entropy.defined());
          CHECK(torch::equal(lp_only.log_probs, r.log_probs));
         }
        }
      }
    }
  }
}

TEST_CASE("linear_log_probs in float64 matches the float64 reference to rounding", "[models][log_probs]") {
  const auto p = make_problem(29, 16, 300, 16.0, torch::kFloat64, 7);
  for (double t : {1.0, 0.6}) {
    const auto ref = naive(p.hidden, p.weight, p.targets, t, torch::kFloat64);
    for (std::int64_t chunk : {0, 4, 29}) {
      INFO("T=" << t << " chunk=" << chunk);
      const auto r = linear_log_probs(p.hidden, p.weight, p.targets, opts(t, true, chunk));
      REQUIRE(r.log_probs.scalar_type() == torch::kFloat64);
      CHECK(max_abs_diff(r.log_probs, ref.log_probs) < 1e-12);
      CHECK(max_abs_diff(r.entropy, ref.entropy) < 1e-12);
    }
  }
  // Hand-worked: H = 1, hidden = 1, weight = (0, 0, ln 3) -> logits (0, 0, ln 3), probabilities (1/5, 1/5, 3/5);
  // log p(2) = ln(3/5); entropy = -(2/5 ln(1/5) + 3/5 ln(3/5)). At T = 2: logits (0, 0, ln 3 / 2),
  // Z = 2 + sqrt 3, log p(0) = -ln(2 + sqrt 3).
  const auto w = torch::tensor({0.0, 0.0, std::log(3.0)}, torch::kFloat64).reshape({3, 1});
  const auto h = torch::ones({1, 1}, torch::kFloat64);
  const auto r1 = linear_log_probs(h, w, torch::tensor({2}, torch::kLong), opts(1.0, true, 0));
  CHECK(r1.log_probs.item<double>() == Approx(std::log(0.6)).epsilon(1e-14));
  CHECK(r1.entropy.item<double>() == Approx(-(0.4 * std::log(0.2) + 0.6 * std::log(0.6))).epsilon(1e-14));
  const auto r2 = linear_log_probs(h, w, torch::tensor({0}, torch::kLong), opts(2.0, false, 0));
  CHECK(r2.log_probs.item<double>() == Approx(-std::log(2.0 + std::sqrt(3.0))).epsilon(1e-14));
}

TEST_CASE("linear_log_probs folds vocabulary blocks into running statistics (float32, hand-worked)", "[models][log_probs]") {
  // H = 1, hidden = 1: the logits are the weight column. Blocks of one column, so each block is folded into
  // the running maximum, sum and entropy term on its own; the maximum rises block after block (-50, 0, 60),
  // falls (then 2), and the target sits in the first, a middle or the last block.
  const auto h = torch::ones({1, 1});
  const auto w = torch::tensor({-50.0f, 0.0f, 60.0f, 2.0f}).reshape({4, 1});
  const double log_z = 60.0 + std::log1p(std::exp(-60.0) + std::exp(-58.0) + std::exp(-110.0));
  for (std::int64_t block : {1, 2, 3, 0}) {
    INFO("vocab_block=" << block);
    for (std::int64_t target : {0, 1, 2, 3}) {
      const auto r = linear_log_probs(h, w, torch::tensor({target}, torch::kLong), opts(1.0, true, 0, block));
      const double logit = w[target][0].item<double>();
      CHECK(r.log_probs.item<double>() == Approx(logit - log_z).epsilon(1e-6).margin(1e-6));
      // entropy = log Z - E[z]; E[z] = 60 - 58 e^-58 - 60 e^-60 - ... ~ 60 - 58 e^-58: about 8e-24 + ...
      CHECK(r.entropy.item<double>() == Approx(0.0).margin(1e-5));
    }
  }
  // (0, 0, ln 3) in blocks of one, at T = 1 and T = 2 (as the float64 hand-worked case).
  const auto w3 = torch::tensor({0.0f, 0.0f, static_cast<float>(std::log(3.0))}).reshape({3, 1});
  const auto r1 = linear_log_probs(h, w3, torch::tensor({2}, torch::kLong), opts(1.0, true, 0, 1));
  CHECK(r1.log_probs.item<double>() == Approx(std::log(0.6)).epsilon(1e-6));
  CHECK(r1.entropy.item<double>() == Approx(-(0.4 * std::log(0.2) + 0.6 * std::log(0.6))).epsilon(1e-6));
  const auto r2 = linear_log_probs(h, w3, torch::tensor({0}, torch::kLong), opts(2.0, false, 0, 1));
  CHECK(r2.log_probs.item<double>() == Approx(-std::log(2.0 + std::sqrt(3.0))).epsilon(1e-6));
  // A -inf logit in a block of its own (first, so the running maximum starts at -inf) contributes nothing.
  const auto w_inf = torch::tensor({-INFINITY, 0.0f, 0.0f}).reshape({3, 1});
  const auto ri = linear_log_probs(h, w_inf, torch::tensor({1}, torch::kLong), opts(1.0, true, 0, 1));
  CHECK(ri.log_probs.item<double>() == Approx(std::log(0.5)).epsilon(1e-6));
  CHECK(ri.entropy.item<double>() == Approx(std::log(2.0)).epsilon(1e-6));
}

TEST_CASE("linear_log_probs gradients equal autograd through the naive path", "[models][log_probs]") {
  for (auto dtype : {torch::kFloat64, torch::kFloat32}) {
    const double tol = dtype == torch::kFloat64 ? 1e-11 : 2e-5;
    const auto p = make_problem(13, 12, 203, 9.0, dtype, 11);
    torch::manual_seed(12);
    const auto g_lp = torch::randn({13}, dtype);
    const auto g_ent = torch::randn({13}, dtype);
    for (double t : {1.0, 0.8}) {
      for (int use : {0, 1, 2}) {  // 0: log-probs only, 1: log-probs + entropy, 2: entropy only
        // chunk 13 = N: float32 keeps the logits for the backward; 4: it recomputes them tile by tile. Vocabulary
        // blocks of 512 (one block here), 16 and 7 (several, the last one shorter).
        for (auto [chunk, block] : {std::pair<std::int64_t, std::int64_t>{4, 0}, {13, 0}, {4, 16}, {13, 16}, {13, 7}, {4, 7}}) {
          if (dtype == torch::kFloat64 && block != 0) continue;  // float64 has no blocked path
          INFO("dtype=" << dtype << " T=" << t << " use=" << use << " chunk=" << chunk << " vocab_block=" << block);
          const auto h_ref = p.hidden.clone().requires_grad_(true);
          const auto w_ref = p.weight.clone().requires_grad_(true);
          const auto ref = naive(h_ref, w_ref, p.targets, t, dtype);
          const auto loss_of = [&](const torch::Tensor& lp, const torch::Tensor& ent) {
            if (use == 0) return (lp * g_lp).sum();
            if (use == 1) return (lp * g_lp).sum() + (ent * g_ent).sum();
            return (ent * g_ent).sum();
          };
          loss_of(ref.log_probs, ref.entropy).backward();
          const auto h = p.hidden.clone().requires_grad_(true);
          const auto w = p.weight.clone().requires_grad_(true);
          const auto r = linear_log_probs(h, w, p.targets, opts(t, use != 0, chunk, block));
          loss_of(r.log_probs, r.entropy).backward();
          const double scale_h = h_ref.grad().abs().max().item<double>() + 1.0;
          const double scale_w = w_ref.grad().abs().max().item<double>() + 1.0;
          CHECK(max_abs_diff(h.grad(), h_ref.grad()) < tol * scale_h);
          CHECK(max_abs_diff(w.grad(), w_ref.grad()) < tol * scale_w);
        }
      }
    }
  }
  // One chunk (the forward keeps its logits for the backward, which overwrites them): a second backward
  // through the retained graph recomputes them and gives the same gradients again.
  {
    const auto q = make_problem(6, 8, 40, 4.0, torch::kFloat64, 4);
    const auto h = q.hidden.clone().requires_grad_(true);
    const auto r = linear_log_probs(h, q.weight, q.targets, opts(1.0, true, 0));
    const auto loss = r.log_probs.sum() + r.entropy.sum();
    loss.backward({}, /*retain_graph=*/true);
    const auto first = h.grad().clone();
    h.mutable_grad().zero_();
    loss.backward();
    CHECK(max_abs_diff(h.grad(), first) < 1e-14);
    const auto h_ref = q.hidden.clone().requires_grad_(true);
    const auto nr = naive(h_ref, q.weight, q.targets, 1.0, torch::kFloat64);
    (nr.log_probs.sum() + nr.entropy.sum()).backward();
    CHECK(max_abs_diff(first, h_ref.grad()) < 1e-12);
  }
  // Only one of the two inputs requires a gradient: the other gets none, the first is unchanged.
  const auto p = make_problem(9, 8, 50, 4.0, torch::kFloat64, 3);
  const auto h_ref = p.hidden.clone().requires_grad_(true);
  naive(h_ref, p.weight, p.targets, 1.0, torch::kFloat64).log_probs.sum().backward();
  const auto h = p.hidden.clone().requires_grad_(true);
  linear_log_probs(h, p.weight, p.targets, opts(1.0, false, 2)).log_probs.sum().backward();
  CHECK(max_abs_diff(h.grad(), h_ref.grad()) < 1e-12);
  CHECK_FALSE(p.weight.grad().defined());
  // Finite differences of the float64 entropy + log-prob objective w.r.t. one weight entry.
  const auto objective = [&](const torch::Tensor& w) {
    const auto r = linear_log_probs(p.hidden, w, p.targets, opts(0.9, true, 4));
    return (r.log_probs.sum() + 0.5 * r.entropy.sum()).item<double>();
  };
  const auto w = p.weight.clone().requires_grad_(true);
  const auto r = linear_log_probs(p.hidden, w, p.targets, opts(0.9, true, 4));
  (r.log_probs.sum() + 0.5 * r.entropy.sum()).backward();
  for (std::int64_t idx : {0L, 17L, 399L}) {
    auto up = p.weight.clone(), down = p.weight.clone();
    up.view(-1)[idx] += 1e-6;
    down.view(-1)[idx] -= 1e-6;
    const double numeric = (objective(up) - objective(down)) / 2e-6;
    CHECK(w.grad().view(-1)[idx].item<double>() == Approx(numeric).margin(1e-7));
  }
}

TEST_CASE("linear_log_probs reuses its CPU chunk block only when no forward still holds it", "[models][log_probs]") {
  // On CPU the (chunk,V) logits buffer comes from a block each thread keeps (detail::chunk_buffer). A forward
  // whose tokens fit one chunk keeps that buffer for its backward, so a second forward before the first
  // backward (gradient accumulation over micro-batches) must not write into it.
  // float64 runs the chunked path (a (7,60) chunk), float32 the blocked one (the (7*60,) kept logits, in
  // blocks of 16 columns).
  const auto dtype = GENERATE(torch::kFloat64, torch::kFloat32);
  const double tol = dtype == torch::kFloat64 ? 1e-12 : 2e-5;
  INFO("dtype=" << dtype);
  verl::models::release_log_prob_buffer();
  const auto a = make_problem(7, 8, 60, 4.0, dtype, 31);
  const auto b = make_problem(7, 8, 60, 4.0, dtype, 32);  // same shapes, other values
  const auto g = [](const verl::models::TokenLogProbs& r) { return r.log_probs.sum() + 0.3 * r.entropy.sum(); };
  const auto ha = a.hidden.clone().requires_grad_(true), hb = b.hidden.clone().requires_grad_(true);
  const auto wa = a.weight.clone().requires_grad_(true), wb = b.weight.clone().requires_grad_(true);
  const auto ra = linear_log_probs(ha, wa, a.targets, opts(0.7, true, 0, 16));
  const auto rb = linear_log_probs(hb, wb, b.targets, opts(0.7, true, 0, 16));
  (g(ra) + g(rb)).backward();
  for (const auto* pr : {&a, &b}) {
    const auto h_ref = pr->hidden.clone().requires_grad_(true);
    const auto w_ref = pr->weight.clone().requires_grad_(true);
    const auto nr = naive(h_ref, w_ref, pr->targets, 0.7, dtype);
    (nr.log_probs.sum() + 0.3 * nr.entropy.sum()).backward();
    const auto& h = pr == &a ? ha : hb;
    const auto& w = pr == &a ? wa : wb;
    CHECK(max_abs_diff(h.grad(), h_ref.grad()) < tol);
    CHECK(max_abs_diff(w.grad(), w_ref.grad()) < tol);
  }
  // Without autograd the block is reused call after call, with the same results each time; in several chunks
  // too, and after release_log_prob_buffer().
  torch::NoGradGuard no_grad;
  for (std::int64_t chunk : {0, 3}) {
    const auto first = linear_log_probs(a.hidden, a.weight, a.targets, opts(1.0, true, chunk));
    const auto other = linear_log_probs(b.hidden, b.weight, b.targets, opts(1.0, true, chunk));
    verl::models::release_log_prob_buffer();
    const auto again = linear_log_probs(a.hidden, a.weight, a.targets, opts(1.0, true, chunk));
    const auto again2 = linear_log_probs(a.hidden, a.weight, a.targets, opts(1.0, true, chunk));
    CHECK(torch::equal(first.log_probs, again.log_probs));
    CHECK(torch::equal(first.entropy, again2.entropy));
    CHECK_FALSE(torch::equal(first.log_probs, other.log_probs));
  }
}

TEST_CASE("linear_log_probs with bfloat16 and float16 inputs", "[models][log_probs]") {
  const auto p32 = make_problem(40, 32, 515, 9.0, torch::kFloat32, 21);
  for (auto dtype : {torch::kBFloat16, torch::kHalf}) {
    const auto hidden = p32.hidden.to(dtype), weight = p32.weight.to(dtype);
    for (double t : {1.0, 0.7}) {
      INFO("dtype=" << dtype << " T=" << t);
      const auto ref = naive(hidden, weight, p32.targets, t, torch::kFloat32);
      const auto r = linear_log_probs(hidden, weight, p32.targets, opts(t, true, 7));
      REQUIRE(r.log_probs.scalar_type() == torch::kFloat32);
      // Same bf16/half logits (a chunk's GEMM may round an element 1 ulp differently from the full GEMM: one
      // bf16 ulp at |logit| ~ 8 is 0.03), then float32 math: allow 1 ulp in the mean.
      CHECK(max_abs_diff(r.log_probs, ref.log_probs) < 0.07);
      CHECK((r.log_probs - ref.log_probs).abs().mean().item<double>() < 2e-3);
      CHECK((r.entropy - ref.entropy).abs().mean().item<double>() < 2e-3);
      // Gradients against autograd through the naive bf16/half path (grad_logits rounded to the input dtype
      // there too; our weight gradient is accumulated in float32 over 6 chunks, the reference in one GEMM).
      torch::manual_seed(5);
      const auto g_lp = torch::randn({40}), g_ent = torch::randn({40});
      const auto h_ref = hidden.clone().requires_grad_(true), w_ref = weight.clone().requires_grad_(true);
      const auto nr = naive(h_ref, w_ref, p32.targets, t, torch::kFloat32);
      ((nr.log_probs * g_lp).sum() + (nr.entropy * g_ent).sum()).backward();
      const auto h = hidden.clone().requires_grad_(true), w = weight.clone().requires_grad_(true);
      const auto rr = linear_log_probs(h, w, p32.targets, opts(t, true, 7));
      ((rr.log_probs * g_lp).sum() + (rr.entropy * g_ent).sum()).backward();
      CHECK(h.grad().scalar_type() == dtype);
      CHECK(rel_err(h.grad(), h_ref.grad()) < 2e-2);
      CHECK(rel_err(w.grad(), w_ref.grad()) < 2e-2);
      // And against the float64 truth on the same (rounded) inputs, which both approximate.
      const auto h64 = hidden.to(torch::kFloat64).requires_grad_(true), w64 = weight.to(torch::kFloat64).requires_grad_(true);
      const auto n64 = naive(h64, w64, p32.targets, t, torch::kFloat64);
      ((n64.log_probs * g_lp.to(torch::kFloat64)).sum() + (n64.entropy * g_ent.to(torch::kFloat64)).sum()).backward();
      CHECK(rel_err(w.grad(), w64.grad()) <= 2.0 * rel_err(w_ref.grad(), w64.grad()) + 1e-3);
    }
  }
}

TEST_CASE("linear_log_probs shapes: no tokens, leading dimensions, automatic chunks", "[models][log_probs]") {
  const auto p = make_problem(0, 8, 20, 1.0, torch::kFloat32, 1);
  const auto w = p.weight.clone().requires_grad_(true);
  const auto h = p.hidden.clone().requires_grad_(true);
  const auto r = linear_log_probs(h, w, p.targets, opts(1.0, true, 0));
  CHECK(r.log_probs.sizes() == torch::IntArrayRef{0});
  CHECK(r.entropy.sizes() == torch::IntArrayRef{0});
  (r.log_probs.sum() + r.entropy.sum()).backward();
  CHECK(torch::equal(w.grad(), torch::zeros_like(w)));
  CHECK(h.grad().sizes() == torch::IntArrayRef{0, 8});

  // (B,T,H) hidden with (B,T) targets: outputs (B,T), equal to the flattened call.
  const auto q = make_problem(12, 8, 40, 4.0, torch::kFloat32, 2);
  const auto r3 = linear_log_probs(q.hidden.reshape({3, 4, 8}), q.weight, q.targets.reshape({3, 4}), opts(1.3, true, 5));
  CHECK(r3.log_probs.sizes() == torch::IntArrayRef{3, 4});
  CHECK(r3.entropy.sizes() == torch::IntArrayRef{3, 4});
  const auto r2 = linear_log_probs(q.hidden, q.weight, q.targets, opts(1.3, true, 5));
  CHECK(torch::equal(r3.log_probs.reshape({-1}), r2.log_probs));
  // A non-contiguous hidden (a transposed view) gives the same values.
  const auto ht = q.hidden.t().contiguous().t();
  CHECK(torch::equal(linear_log_probs(ht, q.weight, q.targets, opts(1.3, true, 5)).log_probs, r2.log_probs));

  // chunk_tokens = 0 chooses the rows that fit max_chunk_bytes: 3 rows of 40 floats here, same values.
  auto o = opts(1.3, true, 0);
  o.max_chunk_bytes = 3 * 40 * 4;
  CHECK(verl::models::detail::resolve_chunk_tokens(o, 12, 40, torch::kFloat32) == 3);
  CHECK(verl::models::detail::resolve_chunk_tokens(o, 12, 40, torch::kBFloat16) == 2);  // 2 + 4 bytes per entry
  CHECK(verl::models::detail::resolve_chunk_tokens(opts(1.0, false, 0), 4096, 151936, torch::kFloat32) == 441);
  CHECK(verl::models::detail::resolve_chunk_tokens(opts(1.0, false, 100), 7, 10, torch::kFloat32) == 7);
  // The blocked path (float32 on CPU): tiles of rows x vocab_block floats within the budget.
  const auto plan = verl::models::detail::make_plan(opts(1.0, false, 0), 4096, 151936, torch::zeros({1, 8}));
  CHECK(plan.blocked);
  CHECK(plan.vocab_block == verl::models::detail::kDefaultVocabBlock);
  CHECK(plan.rows == 4096);  // 256 MiB / (512 * 4 bytes) = 131072 rows >= N
  CHECK(verl::models::detail::make_plan(o, 12, 40, torch::zeros({1, 8})).rows == 3);  // 3 rows of the 40-column block
  CHECK(verl::models::detail::make_plan(opts(1.0, false, 0, 100000), 9, 50, torch::zeros({1, 8})).vocab_block == 50);
  CHECK_FALSE(verl::models::detail::make_plan(opts(1.0, false, 0), 9, 50, torch::zeros({1, 8}, torch::kFloat64)).blocked);
  const auto ra = linear_log_probs(q.hidden, q.weight, q.targets, o);
  const auto r3rows = linear_log_probs(q.hidden, q.weight, q.targets, opts(1.3, true, 3));
  CHECK(torch::equal(ra.log_probs, r3rows.log_probs));  // the same GEMMs: bit-identical
  CHECK(torch::equal(ra.entropy, r3rows.entropy));
  CHECK(max_abs_diff(ra.log_probs, r2.log_probs) < 1e-5);  // other chunks: the GEMM may round differently

  // Under NoGradGuard nothing is recorded even for inputs that require gradients.
  torch::NoGradGuard no_grad;
  const auto rn = linear_log_probs(q.hidden.clone().requires_grad_(true), q.weight, q.targets, opts(1.0, false, 0));
  CHECK_FALSE(rn.log_probs.requires_grad());
}

TEST_CASE("linear_log_probs rejects bad input with a message naming it", "[models][log_probs]") {
  const auto p = make_problem(4, 8, 20, 1.0, torch::kFloat32, 1);
  using verl::ConfigError;
  using verl::ShapeError;
  auto bad_t = p.targets.clone();
  bad_t[2] = 20;
  CHECK_THROWS_MATCHES(linear_log_probs(p.hidden, p.weight, bad_t), ShapeError,
                       Catch::Message("verl::models::linear_log_probs: `targets` holds 20 at flat position 2, "
                                      "expected token ids in [0, 20) (V = weight.size(0))"));
  bad_t[2] = -1;
  CHECK_THROWS_AS(linear_log_probs(p.hidden, p.weight, bad_t), ShapeError);
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight, p.targets.to(torch::kInt)),
                    Catch::Contains("`targets` has dtype Int, expected int64"));
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight, p.targets.to(torch::kFloat)),
                    Catch::Contains("`targets` has dtype Float, expected int64"));
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight, p.targets.narrow(0, 0, 3)),
                    Catch::Contains("`targets` has shape [3], expected [4]"));
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight.narrow(1, 0, 7), p.targets),
                    Catch::Contains("`weight` has shape [20, 7], expected (V, 8)"));
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight.reshape({-1}), p.targets),
                    Catch::Contains("`weight` has 1 dimensions, expected 2 (V, H)"));
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight.to(torch::kFloat64), p.targets),
                    Catch::Contains("`weight` has dtype Double, expected the dtype of `hidden` (Float)"));
  CHECK_THROWS_WITH(linear_log_probs(p.hidden.to(torch::kLong), p.weight.to(torch::kLong), p.targets),
                    Catch::Contains("`hidden` has dtype Long, expected float32"));
  CHECK_THROWS_WITH(linear_log_probs(torch::Tensor(), p.weight, p.targets), Catch::Contains("`hidden` must be a defined"));
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight.narrow(0, 0, 0), p.targets),
                    Catch::Contains("empty vocabulary"));
  CHECK_THROWS_AS(linear_log_probs(p.hidden, p.weight, p.targets, opts(0.0, false, 0)), ConfigError);
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight, p.targets, opts(-1.0, false, 0)),
                    Catch::Contains("temperature is -1, expected a finite value > 0"));
  CHECK_THROWS_AS(linear_log_probs(p.hidden, p.weight, p.targets, opts(std::nan(""), false, 0)), ConfigError);
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight, p.targets, opts(1.0, false, -2)),
                    Catch::Contains("chunk_tokens is -2, expected >= 0"));
  CHECK_THROWS_WITH(linear_log_probs(p.hidden, p.weight, p.targets, opts(1.0, false, 0, -1)),
                    Catch::Contains("vocab_block is -1, expected >= 0 (0 chooses 512)"));
}

TEST_CASE("linear_log_probs keeps peak memory at O(chunk x V), the naive path does not", "[models][log_probs]") {
  // N = 2048 tokens, V = 8192, H = 64, float32: the naive logits alone are 64 MiB (and log_softmax/softmax
  // copies as much again each); 64-token chunks are 2 MiB. Inputs are 2.5 MiB, gradients as much.
  const auto p = make_problem(2048, 64, 8192, 4.0, torch::kFloat32, 9);
  const auto h = p.hidden.clone().requires_grad_(true);
  const auto w = p.weight.clone().requires_grad_(true);
  // The fused path runs first, so it cannot reuse pages the naive one freed.
  const long long fused_peak = peak_rss_delta_bytes([&] {
    const auto r = linear_log_probs(h, w, p.targets, opts(1.0, true, 64));
    (r.log_probs.sum() + r.entropy.sum()).backward();
  });
  if (fused_peak < 0) {
    WARN("/proc/self/clear_refs is not writable here: peak memory not measured");
    return;
  }
  h.mutable_grad().reset();
  w.mutable_grad().reset();
  const long long naive_peak = peak_rss_delta_bytes([&] {
    const auto r = naive(h, w, p.targets, 1.0, torch::kFloat32);
    (r.log_probs.sum() + r.entropy.sum()).backward();
  });
  INFO("naive peak delta " << naive_peak / 1048576.0 << " MiB, fused " << fused_peak / 1048576.0 << " MiB");
  CHECK(naive_peak > (std::int64_t{128} << 20));   // the check can see the (N,V) tensors
  CHECK(fused_peak < (std::int64_t{24} << 20));    // 2 MiB chunk + 2.5 MiB grads + allocator/thread slack
}

}  // namespace test_log_probs
