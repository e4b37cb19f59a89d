// Host masked normalised cross-correlation (cv2.matchTemplate TM_CCOEFF_NORMED with a mask). Single-threaded.
//
// R(x, y) = sum T'(I - mean_I) / sqrt(sum T'^2 * sum (I - mean_I)^2) over the template's valid pixels, T' = T minus
// its mean over them, mean_I the window's mean over them. The numerator is a correlation of T' with the window
// (float sums over one template row, added up in double); the window's sums under the mask come from row prefix
// sums in double of the window less its overall mean, so that the variance does not cancel.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <vector>

#include "common.hpp"

namespace skyfix {
namespace {

// Output block of the numerator kept in registers: kYB rows x kXB = 8 columns, as vectors of kLanes floats (AVX:
// one 8-float register per row, 8 rows; SSE/NEON: two 4-float registers per row, 4 rows), i.e. 8 independent sums
// in flight in 8 registers.
#if defined(__AVX__)
constexpr int kLanes = 8;
constexpr int kYB = 8;
#else
constexpr int kLanes = 4;
constexpr int kYB = 4;
#endif
constexpr int kXB = 8;
constexpr int kVPR = kXB / kLanes;  // vectors per block row

struct Run {  // valid template pixels [c0, c1) of template row r
  int64_t r, c0, c1;
};

// acc[yy][j] = sum over the runs' columns c of t[c] * base[yy * pitch + c + j]: one template row against kYB
// window rows, for kXB neighbouring offsets.
// GCC/Clang vector extensions; SKYFIX_NATIVE_NO_VECTOR builds the portable loop only
#if !defined(SKYFIX_NATIVE_NO_VECTOR) && (defined(__GNUC__) || defined(__clang__))
typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

void row_block(const float* base, int64_t pitch, const float* t, const Run* begin, const Run* end,
               float (&acc)[kYB][kXB]) {
  vf a[kYB][kVPR] = {};
  for (const Run* run = begin; run != end; ++run) {
    for (int64_t c = run->c0; c < run->c1; ++c) {
      const vf w = vf{} + t[c];  // the scalar broadcast to every lane
      for (int yy = 0; yy < kYB; ++yy) {
        for (int v = 0; v < kVPR; ++v) a[yy][v] += w * load(base + yy * pitch + c + v * kLanes);
      }
    }
  }
  std::memcpy(acc, a, sizeof(acc));
}
#else
void row_block(const float* base, int64_t pitch, const float* t, const Run* begin, const Run* end,
               float (&acc)[kYB][kXB]) {
  for (int yy = 0; yy < kYB; ++yy) {
    for (int j = 0; j < kXB; ++j) acc[yy][j] = 0.0f;
  }
  for (const Run* run = begin; run != end; ++run) {
    for (int64_t c = run->c0; c < run->c1; ++c) {
      for (int yy = 0; yy < kYB; ++yy) {
        for (int j = 0; j < kXB; ++j) acc[yy][j] += t[c] * base[yy * pitch + c + j];
      }
    }
  }
}
#endif

void fill_nan(float* result, int64_t rows, int64_t cols, int64_t pitch) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t y = 0; y < rows; ++y) {
    float* r = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(result) + y * pitch);
    std::fill(r, r + cols, nan);
  }
}

void match(const float* image, int64_t H, int64_t W, int64_t image_pitch, const float* templ, int64_t th,
           int64_t tw, int64_t templ_pitch, const uint8_t* mask, int64_t mask_pitch, float* result,
           int64_t result_pitch) {
  const int64_t ny = H - th + 1, nx = W - tw + 1;
  auto trow = [&](int64_t r) {
    return reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(templ) + r * templ_pitch);
  };
  auto irow = [&](int64_t r) {
    return reinterpret_cast<const float*>(reinterpret_cast<const uint8_t*>(image) + r * image_pitch);
  };
  auto valid = [&](int64_t r, int64_t c) { return mask == nullptr || mask[r * mask_pitch + c] != 0; };

  // template: runs of valid pixels, mean, T' = T - mean (0 where masked), its variance
  std::vector<Run> runs;
  int64_t n = 0;
  double sum_t = 0.0, sum_t2 = 0.0;
  for (int64_t r = 0; r < th; ++r) {
    const float* t = trow(r);
    for (int64_t c = 0; c < tw;) {
      if (!valid(r, c)) {
        ++c;
        continue;
      }
      const int64_t c0 = c;
      for (; c < tw && valid(r, c); ++c) {
        sum_t += t[c];
        sum_t2 += static_cast<double>(t[c]) * t[c];
      }
      runs.push_back({r, c0, c});
      n += c - c0;
    }
  }
  if (n == 0) return fill_nan(result, ny, nx, result_pitch);
  const double t_mean = sum_t / static_cast<double>(n);
  std::vector<float> tp(static_cast<size_t>(th * tw), 0.0f);
  double var_t = 0.0, sum_tp = 0.0;
  for (const Run& run : runs) {
    const float* t = trow(run.r);
    for (int64_t c = run.c0; c < run.c1; ++c) {
      const float v = static_cast<float>(t[c] - t_mean);
      tp[static_cast<size_t>(run.r * tw + c)] = v;
      var_t += static_cast<double>(v) * v;
      sum_tp += v;
    }
  }
  if (var_t <= kFlatRelVariance * sum_t2) return fill_nan(result, ny, nx, result_pitch);

  // window: centred on its mean (so the sums below do not cancel), zero-padded by a block on the right and below
  // (the blocked loop reads there only for outputs it then drops); row prefix sums of I and I^2 in double
  double g = 0.0;
  for (int64_t y = 0; y < H; ++y) {
    const float* src = irow(y);
    for (int64_t x = 0; x < W; ++x) g += src[x];
  }
  g /= static_cast<double>(H * W);
  const int64_t wp = W + kXB;
  std::vector<float> ic(static_cast<size_t>((H + kYB) * wp), 0.0f);
  std::vector<double> p1(static_cast<size_t>(H * (W + 1))), p2(static_cast<size_t>(H * (W + 1)));
  for (int64_t y = 0; y < H; ++y) {
    const float* src = irow(y);
    float* dst = ic.data() + y * wp;
    double* q1 = p1.data() + y * (W + 1);
    double* q2 = p2.data() + y * (W + 1);
    q1[0] = q2[0] = 0.0;
    for (int64_t x = 0; x < W; ++x) {
      const float v = static_cast<float>(src[x] - g);
      dst[x] = v;
      q1[x + 1] = q1[x] + v;
      q2[x + 1] = q2[x] + static_cast<double>(v) * v;
    }
  }

  // numerator: sum T' Ic over blocks of kYB x kXB outputs held in registers; float sums over one template row,
  // added up in double
  std::vector<double> num(static_cast<size_t>(ny * nx), 0.0);
  for (int64_t y0 = 0; y0 < ny; y0 += kYB) {
    for (int64_t x0 = 0; x0 < nx; x0 += kXB) {
      double accd[kYB][kXB] = {};
      size_t k = 0;
      while (k < runs.size()) {
        const int64_t r = runs[k].r;
        float acc[kYB][kXB];
        const float* base = ic.data() + (y0 + r) * wp + x0;
        const float* trw = tp.data() + r * tw;
        size_t k1 = k;
        while (k1 < runs.size() && runs[k1].r == r) ++k1;
        row_block(base, wp, trw, runs.data() + k, runs.data() + k1, acc);
        k = k1;
        for (int yy = 0; yy < kYB; ++yy) {
          for (int j = 0; j < kXB; ++j) accd[yy][j] += acc[yy][j];
        }
      }
      for (int yy = 0; yy < kYB && y0 + yy < ny; ++yy) {
        for (int j = 0; j < kXB && x0 + j < nx; ++j) num[static_cast<size_t>((y0 + yy) * nx + x0 + j)] = accd[yy][j];
      }
    }
  }

  // window sums under the mask from the prefix sums, one run at a time; then the correlation
  std::vector<double> s1(static_cast<size_t>(nx)), s2(static_cast<size_t>(nx));
  const double dn = static_cast<double>(n);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t y = 0; y < ny; ++y) {
    std::fill(s1.begin(), s1.end(), 0.0);
    std::fill(s2.begin(), s2.end(), 0.0);
    for (const Run& run : runs) {
      const double* q1 = p1.data() + (y + run.r) * (W + 1);
      const double* q2 = p2.data() + (y + run.r) * (W + 1);
      for (int64_t x = 0; x < nx; ++x) {
        s1[x] += q1[x + run.c1] - q1[x + run.c0];
        s2[x] += q2[x + run.c1] - q2[x + run.c0];
      }
    }
    float* out = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(result) + y * result_pitch);
    const double* nrow = num.data() + y * nx;
    for (int64_t x = 0; x < nx; ++x) {
      const double var_i = s2[x] - s1[x] * s1[x] / dn;
      const double raw2 = s2[x] + 2.0 * g * s1[x] + dn * g * g;  // sum of I^2 under the mask
      if (!(var_i > kFlatRelVariance * std::max(raw2, s2[x]))) {
        out[x] = nan;
        continue;
      }
      // sum T'(I - mean_I) = sum T' Ic - sum T' * mean(Ic): sum T' is ~0 but not exactly (float T')
      const double cov = nrow[x] - sum_tp * s1[x] / dn;
      out[x] = static_cast<float>(cov / std::sqrt(var_t * var_i));
    }
  }
}

}  // namespace
}  // namespace skyfix

extern "C" {

SKYFIX_API int skyfix_match_template_ccoeff_normed(const float* image, int64_t image_h, int64_t image_w,
                                                   int64_t image_pitch, const float* templ, int64_t templ_h,
                                                   int64_t templ_w, int64_t templ_pitch, const uint8_t* mask,
                                                   int64_t mask_pitch, float* result, int64_t result_pitch) {
  using namespace skyfix;
  const int rc = check_match(image, image_h, image_w, image_pitch, templ, templ_h, templ_w, templ_pitch, mask,
                             mask_pitch, result, result_pitch);
  if (rc != SKYFIX_OK) return rc;
  try {
    match(image, image_h, image_w, image_pitch, templ, templ_h, templ_w, templ_pitch, mask, mask_pitch, result,
          result_pitch);
  } catch (const std::bad_alloc&) {
    return fail(SKYFIX_ERR_MEMORY, "match_template: out of host memory for a %lldx%lld image",
                static_cast<long long>(image_h), static_cast<long long>(image_w));
  }
  return ok();
}

}  // extern "C"

