// Native correctness driver for the CPU SIMD targets, run on the build machine and, cross-compiled
// for aarch64, under qemu-user (NEON and SVE). For random data of every dtype with planted NaN,
// +-Inf, +-0, subnormals and near-max values, at lengths around the 512-element block, every
// target this CPU supports must give the per-element float64 path's counts and histogram exactly
// and its sums to float-lane accuracy, and both must match an independent long-double oracle.
// Usage: cpu_targets_driver [seed] [--expect TARGET...]: exits non-zero on any mismatch, or when an
// expected target is missing or unsupported. Prints one line per target.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "../../csrc/cpu/cpu_dispatch.hpp"

using namespace gp;
using gp::cpu::CpuTarget;
using gp::cpu::Kernels;

namespace {

struct Input {
  int dtype;
  std::vector<unsigned char> bytes;
  i64 n;
};

int element_bytes(int dtype) { return dtype == kF32 ? 4 : (dtype == kF64 ? 8 : 2); }

u32 f32_bits(float f) {
  u32 b;
  std::memcpy(&b, &f, 4);
  return b;
}

// float -> IEEE half bits, rounding to nearest even (finite inputs in half range; others to Inf/0).
unsigned short f32_to_f16(float f) {
  const u32 b = f32_bits(f), sign = (b >> 16) & 0x8000;
  const float a = std::fabs(f);
  if (std::isnan(f)) return (unsigned short)(sign | 0x7e00);
  if (a >= 65520.0f) return (unsigned short)(sign | 0x7c00);
  if (a < 0x1p-25f) return (unsigned short)sign;
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  const int exp = e - 1 < -14 ? -14 : e - 1;  // subnormals share exponent -14
  const float scaled = std::nearbyint(std::ldexp(a, 10 - exp));  // mantissa with implicit bit
  u32 m = (u32)scaled, biased = (u32)(exp + 15);
  if (m >= 2048) { m >>= 1; ++biased; }
  if (m < 1024) return (unsigned short)(sign | m);  // subnormal
  return (unsigned short)(sign | (biased << 10) | (m & 0x3ff));
}

Input make_input(int dtype, i64 n, std::mt19937_64& rng, bool specials) {
  std::normal_distribution<double> normal;
  std::uniform_int_distribution<int> decade(-6, 2);
  std::vector<double> x((size_t)n);
  for (auto& v : x) v = normal(rng) * std::pow(10.0, decade(rng));
  const double max = dtype == kF32 ? 3.4028234663852886e38 : dtype == kF16 ? 65504.0 : dtype == kBF16 ? 3.3895313892515355e38 : 1.7976931348623157e308;
  const double tiny = dtype == kF32 ? 0x1p-126 : dtype == kF16 ? 0x1p-14 : dtype == kBF16 ? 0x1p-126 : 0x1p-1022;
  if (specials && n >= 16) {
    const double inf = std::numeric_limits<double>::infinity();
    const double planted[] = {std::nan(""), inf, -inf, 0.0, -0.0, tiny / 4, -tiny / 8, max * 0.9, -max * 0.75, tiny};
    for (double v : planted) x[(size_t)(rng() % (u64)n)] = v;
  }
  Input in{dtype, std::vector<unsigned char>((size_t)(n * element_bytes(dtype)) + 64), n};
  for (i64 i = 0; i < n; ++i) {
    unsigned char* p = in.bytes.data() + i * element_bytes(dtype);
    if (dtype == kF64) std::memcpy(p, &x[(size_t)i], 8);
    else if (dtype == kF32) { float f = (float)x[(size_t)i]; std::memcpy(p, &f, 4); }
    else if (dtype == kBF16) { unsigned short h = (unsigned short)(f32_bits((float)x[(size_t)i]) >> 16); std::memcpy(p, &h, 2); }
    else { unsigned short h = f32_to_f16((float)x[(size_t)i]); std::memcpy(p, &h, 2); }
  }
  return in;
}

struct Row {
  double f[kNumFields];
  u64 hist[kHistBins];
  bool squares_overflow;  // the sum of squares exceeds float64 (|x| near float64's max): l2, std undefined
};

Row run_target(const Kernels& k, const TensorDesc& t) {
  Row r{};
  Partial p = k.stretch(t, 0, t.numel, r.hist);
  partial_finalize(p, r.f);
  return r;
}

// Independent oracle: long double, two passes, bins by frexp.
Row oracle(const TensorDesc& t) {
  Row r{};
  long double n = 0, sum = 0, l1 = 0, zeros = 0, nans = 0, infs = 0;
  double mn = INFINITY, mx = -INFINITY;
  std::vector<long double> xs;
  for (i64 i = 0; i < t.numel; ++i) {
    const long double x = (long double)load_element((const void*)t.a, t.dtype_a, i) -
                          (t.b ? (long double)load_element((const void*)t.b, t.dtype_b, i) : 0.0L);
    if (std::isnan(x)) { ++nans; continue; }
    if (std::isinf(x)) { ++infs; continue; }
    xs.push_back(x);
    ++n; sum += x; l1 += std::fabs(x);
    mn = std::fmin(mn, (double)x); mx = std::fmax(mx, (double)x);
    if (x == 0) { ++zeros; continue; }
    int e;
    std::frexp((double)x, &e);
    int bin = (e - 1) - kHistExpMin + 1;
    bin = bin < 0 ? 0 : (bin > kHistBins - 1 ? kHistBins - 1 : bin);
    ++r.hist[bin];
  }
  const long double mean = n > 0 ? sum / n : 0;
  long double m2 = 0, sq = 0;
  for (long double x : xs) { m2 += (x - mean) * (x - mean); sq += x * x; }
  r.squares_overflow = sq > 1.79e308L || m2 > 1.79e308L;
  r.f[kNumel] = (double)(n + nans + infs); r.f[kFinite] = (double)n; r.f[kL1] = (double)l1;
  r.f[kZeros] = (double)zeros; r.f[kNans] = (double)nans; r.f[kInfs] = (double)infs;
  if (n > 0) {
    r.f[kL2] = (double)std::sqrt(sq); r.f[kMin] = mn; r.f[kMax] = mx; r.f[kMean] = (double)mean;
    r.f[kStd] = (double)std::sqrt(m2 / n);
  } else {
    r.f[kL2] = 0; r.f[kMin] = r.f[kMax] = r.f[kMean] = r.f[kStd] = NAN;
  }
  return r;
}

bool close(double got, double want, double tol) {
  if (std::isnan(want)) return std::isnan(got);
  if (std::isinf(want) || std::isinf(got)) return got == want;
  return std::fabs(got - want) <= tol;
}

// Empty when they agree; else the first difference.
std::string compare(const Row& got, const Row& want, double rtol, bool squares_overflow) {
  static const char* names[] = {"numel", "finite", "l2", "l1", "min", "max", "mean", "std", "zeros", "nans", "infs"};
  for (int f : {kNumel, kFinite, kZeros, kNans, kInfs, kMin, kMax}) {
    if (!(got.f[f] == want.f[f] || (std::isnan(got.f[f]) && std::isnan(want.f[f]))))
      return std::string(names[f]) + " " + std::to_string(got.f[f]) + " != " + std::to_string(want.f[f]);
  }
  for (int b = 0; b < kHistBins; ++b)
    if (got.hist[b] != want.hist[b])
      return "hist bin " + std::to_string(b) + ": " + std::to_string(got.hist[b]) + " != " + std::to_string(want.hist[b]);
  const double scale = std::fabs(want.f[kMean]) + want.f[kStd];
  for (int f : {kL2, kL1, kStd}) {
    if (squares_overflow && f != kL1) continue;
    if (!close(got.f[f], want.f[f], rtol * std::fabs(want.f[f]) + 1e-300))
      return std::string(names[f]) + " " + std::to_string(got.f[f]) + " vs " + std::to_string(want.f[f]);
  }
  if (!squares_overflow && !close(got.f[kMean], want.f[kMean], rtol * scale + 1e-300))
    return "mean " + std::to_string(got.f[kMean]) + " vs " + std::to_string(want.f[kMean]);
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  u64 seed = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1;
  std::vector<std::string> expected;
  for (int i = 2; i < argc; ++i)
    if (std::string(argv[i]) != "--expect") expected.push_back(argv[i]);
  std::mt19937_64 rng(seed);
  const i64 lengths[] = {0, 1, 7, 511, 512, 513, 3 * 512 + 5, 8192, 40 * 512 + 17, 100003};
  const int dtypes[] = {kF32, kF16, kBF16, kF64};
  struct Case { Input a, b; bool pair; };
  std::vector<Case> cases;
  for (int d : dtypes)
    for (i64 n : lengths) {
      cases.push_back({make_input(d, n, rng, true), Input{}, false});
      cases.push_back({make_input(d, n, rng, false), Input{}, false});
    }
  for (int d : dtypes)
    for (i64 n : {i64{1000}, i64{4099}, i64{65536}}) {  // pairs: weights before and after a small update
      Input after = make_input(d, n, rng, false), before = after;
      std::mt19937_64 r2(rng());
      for (i64 i = 0; i < n; i += 3) before.bytes[(size_t)(i * element_bytes(d))] ^= (unsigned char)(r2() & 7);
      cases.push_back({after, before, true});
    }
  cases.push_back({make_input(kF32, 5000, rng, true), make_input(kF64, 5000, rng, true), true});  // mixed dtypes
  for (int d : dtypes) {  // one exponent bin for 40 blocks: the histogram's byte counters must flush before they wrap
    Input constant = make_input(d, 40 * 512 + 3, rng, false);
    const float value = -1.5f;  // exact in every dtype, so the oracle's std is exactly 0 too
    unsigned char encoded[8];
    if (d == kF64) { const double v = value; std::memcpy(encoded, &v, 8); }
    else if (d == kF32) std::memcpy(encoded, &value, 4);
    else { const unsigned short h = d == kBF16 ? (unsigned short)(f32_bits(value) >> 16) : f32_to_f16(value);
           std::memcpy(encoded, &h, 2); }
    for (i64 i = 0; i < constant.n; ++i)
      std::memcpy(constant.bytes.data() + i * element_bytes(d), encoded, (size_t)element_bytes(d));
    cases.push_back({constant, Input{}, false});
  }

  int failures = 0;
  std::string seen;
  for (const CpuTarget& target : gp::cpu::cpu_targets()) {
    seen += target.name + " ";
    if (!target.supported) {
      std::printf("%-12s skipped: this CPU lacks %s\n", target.name.c_str(), target.needs.c_str());
      continue;
    }
    const std::string error = gp::cpu::set_cpu_target(target.name);
    if (!error.empty()) { std::printf("%-12s FAIL: %s\n", target.name.c_str(), error.c_str()); ++failures; continue; }
    const Kernels& kernels = gp::cpu::current_kernels();
    int checked = 0, bad = 0;
    for (const Case& c : cases) {
      TensorDesc t{(u64)c.a.bytes.data(), c.pair ? (u64)c.b.bytes.data() : 0, c.a.n, c.a.dtype,
                   c.pair ? c.b.dtype : c.a.dtype, 0, 0};
      const Row got = run_target(kernels, t), exact = run_target(gp::cpu::kExactKernels, t), want = oracle(t);
      // Float lanes hold each block's deviations to 2^-24; sums over many blocks stay within ~1e-5.
      std::string diff = compare(got, exact, 2e-5, want.squares_overflow);
      std::string vs_oracle = compare(got, want, 2e-5, want.squares_overflow);
      if (!diff.empty() || !vs_oracle.empty()) {
        if (bad < 5)
          std::printf("%-12s mismatch dtype=%d n=%lld pair=%d: vs exact [%s] vs oracle [%s]\n", target.name.c_str(),
                      c.a.dtype, (long long)c.a.n, (int)c.pair, diff.c_str(), vs_oracle.c_str());
        ++bad;
      }
      ++checked;
    }
    std::printf("%-12s %s: %d/%d cases agree with the float64 path and the long-double oracle\n", target.name.c_str(),
                bad ? "FAIL" : "ok", checked - bad, checked);
    failures += bad;
  }
  for (const std::string& name : expected) {
    bool found = false;
    for (const CpuTarget& t : gp::cpu::cpu_targets()) found |= t.name == name && t.supported;
    if (!found) { std::printf("expected target %s is not compiled or not supported (compiled: %s)\n", name.c_str(), seen.c_str()); ++failures; }
  }
  std::printf("%s\n", failures ? "FAILED" : "PASSED");
  return failures ? 1 : 0;
}
