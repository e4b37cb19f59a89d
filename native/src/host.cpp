// Host implementations of the warp and the normalisation. Single-threaded (the runtime gives each stage one core);
// compiled with -ffp-contract=off so that the float steps round as numpy's do (and as the CUDA kernels' do).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common.hpp"

namespace skyfix {
namespace {

// ------------------------------------------------------------------------------------------------------ warp
// Round half to even (as cv::saturate_cast and CUDA's __float2int_rn) of v in about [0, 255]: adding and removing
// 1.5 * 2^23 leaves the nearest integer in the default rounding mode, without a libm call.
inline uint8_t round_u8(float v) {
  const float r = (v + 12582912.0f) - 12582912.0f;
  return static_cast<uint8_t>(r < 0.0f ? 0.0f : (r > 255.0f ? 255.0f : r));
}

// floor of v >= -1 as an int, without a libm call (baseline x86-64 has no rounding instruction)
inline int64_t floor_i(float v) {
  const int64_t t = static_cast<int64_t>(v);  // towards zero
  return static_cast<float>(t) > v ? t - 1 : t;
}

// The bilinear value of channel k: top row, bottom row, then between them (the order cv2 and the CUDA kernel use).
inline float lerp2(float a, float b, float c, float d, float ax, float ay) {
  const float top = a + ax * (b - a);
  const float bot = c + ax * (d - c);
  return top + ay * (bot - top);
}

// The frame and the geometry of one warp.
struct WarpSource {
  const uint8_t* src;
  int64_t pitch, x_last, y_last;
  float x_hi, y_hi;  // the frame's pixel-edge bounds: w - 0.5, h - 0.5
  int64_t last4;     // the largest offset a 4-byte read may start at (inside the frame's bytes)
};

// One output pixel: value (0 when invalid) and validity.
template <int C>
inline bool warp_pixel(const WarpSource& f, int64_t cn, float sx, float sy, uint8_t* px) {
  // NaN fails every comparison, so it is invalid too
  if (!(sx >= -0.5f && sx <= f.x_hi && sy >= -0.5f && sy <= f.y_hi)) {
    for (int64_t k = 0; k < cn; ++k) px[k] = 0;
    return false;
  }
  // x0 >= -1 (sx >= -0.5): neighbours clamped into the frame (BORDER_REPLICATE)
  const int64_t x0 = floor_i(sx), y0 = floor_i(sy);
  const float ax = sx - static_cast<float>(x0), ay = sy - static_cast<float>(y0);  // exact in float
  const int64_t xa = std::max(x0, int64_t{0}) * cn, xb = std::min(x0 + 1, f.x_last) * cn;
  const uint8_t* ra = f.src + std::max(y0, int64_t{0}) * f.pitch;
  const uint8_t* rb = f.src + std::min(y0 + 1, f.y_last) * f.pitch;
  for (int64_t k = 0; k < cn; ++k) px[k] = round_u8(lerp2(ra[xa + k], ra[xb + k], rb[xa + k], rb[xb + k], ax, ay));
  return true;
}

// GCC/Clang vector extensions (with __builtin_convertvector); SKYFIX_NATIVE_NO_VECTOR builds the portable code only
#if !defined(SKYFIX_NATIVE_NO_VECTOR) && (defined(__clang__) || (defined(__GNUC__) && __GNUC__ >= 9))
#define SKYFIX_VECTOR_WARP 1
// Four output pixels at once, one per lane (the same float steps as warp_pixel on each lane). Only for groups whose
// four pixels are all valid, in frames under 2 GiB (32-bit offsets).
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

inline v4f load4(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// all four valid
inline bool all_valid(const WarpSource& f, v4f sx, v4f sy) {
  const v4i ok = (sx >= -0.5f) & (sx <= f.x_hi) & (sy >= -0.5f) & (sy <= f.y_hi);
  return (ok[0] & ok[1] & ok[2] & ok[3]) != 0;
}

template <int C>
inline void warp_group(const WarpSource& f, v4f sx, v4f sy, uint8_t* px) {
  const v4i xt = __builtin_convertvector(sx, v4i), yt = __builtin_convertvector(sy, v4i);  // towards zero
  const v4i x0 = xt + (__builtin_convertvector(xt, v4f) > sx), y0 = yt + (__builtin_convertvector(yt, v4f) > sy);
  const v4f ax = sx - __builtin_convertvector(x0, v4f), ay = sy - __builtin_convertvector(y0, v4f);
  const v4i zero = {0, 0, 0, 0};
  const int32_t xl = static_cast<int32_t>(f.x_last), yl = static_cast<int32_t>(f.y_last);
  const int32_t pitch = static_cast<int32_t>(f.pitch);
  const v4i x1 = x0 + 1, y1 = y0 + 1;
  const v4i xa = (x0 < zero ? zero : x0) * C, xb = (x1 > xl ? v4i{xl, xl, xl, xl} : x1) * C;
  const v4i ya = (y0 < zero ? zero : y0) * pitch, yb = (y1 > yl ? v4i{yl, yl, yl, yl} : y1) * pitch;
  const v4i o00 = ya + xa, o01 = ya + xb, o10 = yb + xa, o11 = yb + xb;
  const uint8_t* s = f.src;
  v4i ia[C], ib[C], ic[C], id[C];
  if (C >= 3 && o11[0] <= f.last4 && o11[1] <= f.last4 && o11[2] <= f.last4 && o11[3] <= f.last4) {
    // one 4-byte read per neighbour pixel (o11 is the largest offset of each lane), channels by shifts
    auto word = [s](const v4i& o) {
      uint32_t w[4];
      for (int l = 0; l < 4; ++l) std::memcpy(&w[l], s + o[l], 4);
      return v4i{static_cast<int32_t>(w[0]), static_cast<int32_t>(w[1]), static_cast<int32_t>(w[2]),
                 static_cast<int32_t>(w[3])};
    };
    const v4i wa = word(o00), wb = word(o01), wc = word(o10), wd = word(o11);
    for (int k = 0; k < C; ++k) {  // little-endian: channel k is byte k
      ia[k] = (wa >> (8 * k)) & 255;
      ib[k] = (wb >> (8 * k)) & 255;
      ic[k] = (wc >> (8 * k)) & 255;
      id[k] = (wd >> (8 * k)) & 255;
    }
  } else {
    for (int k = 0; k < C; ++k) {
      ia[k] = v4i{s[o00[0] + k], s[o00[1] + k], s[o00[2] + k], s[o00[3] + k]};
      ib[k] = v4i{s[o01[0] + k], s[o01[1] + k], s[o01[2] + k], s[o01[3] + k]};
      ic[k] = v4i{s[o10[0] + k], s[o10[1] + k], s[o10[2] + k], s[o10[3] + k]};
      id[k] = v4i{s[o11[0] + k], s[o11[1] + k], s[o11[2] + k], s[o11[3] + k]};
    }
  }
  for (int k = 0; k < C; ++k) {
    const v4f a = __builtin_convertvector(ia[k], v4f), b = __builtin_convertvector(ib[k], v4f);
    const v4f c = __builtin_convertvector(ic[k], v4f), d = __builtin_convertvector(id[k], v4f);
    const v4f top = a + ax * (b - a);
    const v4f bot = c + ax * (d - c);
    const v4f v = ((top + ay * (bot - top)) + 12582912.0f) - 12582912.0f;  // round half to even, as round_u8
    const v4i r = __builtin_convertvector(v, v4i);
    for (int l = 0; l < 4; ++l) px[l * C + k] = static_cast<uint8_t>(r[l]);  // in [0, 255]: convex combination
  }
}
#endif

template <int C>
void warp_rows(const uint8_t* src, int64_t src_h, int64_t src_w, int64_t channels, int64_t src_pitch,
               const uint8_t* map_x, int64_t map_x_pitch, const uint8_t* map_y, int64_t map_y_pitch, int64_t out_h,
               int64_t out_w, uint8_t* out, int64_t out_pitch, uint8_t* mask, int64_t mask_pitch) {
  const int64_t cn = C > 0 ? C : channels;
  const WarpSource f{src, src_pitch, src_w - 1, src_h - 1, static_cast<float>(src_w) - 0.5f,
                     static_cast<float>(src_h) - 0.5f, (src_h - 1) * src_pitch + src_w * cn - 4};
#if defined(SKYFIX_VECTOR_WARP)
  const bool vector = C > 0 && src_h * src_pitch < (int64_t{1} << 31);
#endif
  for (int64_t y = 0; y < out_h; ++y) {
    const float* mx = reinterpret_cast<const float*>(map_x + y * map_x_pitch);
    const float* my = reinterpret_cast<const float*>(map_y + y * map_y_pitch);
    uint8_t* o = out + y * out_pitch;
    uint8_t* m = mask != nullptr ? mask + y * mask_pitch : nullptr;
    int64_t x = 0;
#if defined(SKYFIX_VECTOR_WARP)
    if (vector) {
      for (; x + 4 <= out_w; x += 4) {
        const v4f sx = load4(mx + x), sy = load4(my + x);
        if (all_valid(f, sx, sy)) {
          warp_group<(C > 0 ? C : 1)>(f, sx, sy, o + x * cn);
          if (m != nullptr) std::memset(m + x, 1, 4);
          continue;
        }
        for (int64_t j = x; j < x + 4; ++j) {
          const bool ok = warp_pixel<C>(f, cn, mx[j], my[j], o + j * cn);
          if (m != nullptr) m[j] = ok ? 1 : 0;
        }
      }
    }
#endif
    for (; x < out_w; ++x) {
      const bool ok = warp_pixel<C>(f, cn, mx[x], my[x], o + x * cn);
      if (m != nullptr) m[x] = ok ? 1 : 0;
    }
  }
}

// ------------------------------------------------------------------------------------------------------ half
uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, sizeof(x));
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf, NaN (kept quiet, top payload bits kept)
    return static_cast<uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? (0x0200u | ((ax >> 13) & 0x03ffu)) : 0u));
  }
  if (ax >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // >= 65520 rounds to inf
  if (ax < 0x38800000u) {  // below 2^-14: a half subnormal (or zero), mantissa = round(|f| * 2^24)
    float a;
    std::memcpy(&a, &ax, sizeof(a));
    return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(a * 16777216.0f)));
  }
  const uint32_t mant = ax & 0x007fffffu;
  uint32_t h = (((ax >> 23) - 112u) << 10) | (mant >> 13);  // rebias 127 -> 15
  const uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;  // a carry moves into the exponent, as it should
  return static_cast<uint16_t>(sign | h);
}

}  // namespace
}  // namespace skyfix

extern "C" {

SKYFIX_API int skyfix_warp_bilinear_u8(const uint8_t* src, int64_t src_h, int64_t src_w, int64_t channels,
                                       int64_t src_pitch, const float* map_x, int64_t map_x_pitch,
                                       const float* map_y, int64_t map_y_pitch, int64_t out_h, int64_t out_w,
                                       uint8_t* out, int64_t out_pitch, uint8_t* mask, int64_t mask_pitch) {
  using namespace skyfix;
  const int rc = check_warp(src, src_h, src_w, channels, src_pitch, map_x, map_x_pitch, map_y, map_y_pitch, out_h,
                            out_w, out, out_pitch, mask, mask_pitch);
  if (rc != SKYFIX_OK) return rc;
  const auto* mx = reinterpret_cast<const uint8_t*>(map_x);
  const auto* my = reinterpret_cast<const uint8_t*>(map_y);
  switch (channels) {
    case 1:
      warp_rows<1>(src, src_h, src_w, channels, src_pitch, mx, map_x_pitch, my, map_y_pitch, out_h, out_w, out,
                   out_pitch, mask, mask_pitch);
      break;
    case 3:
      warp_rows<3>(src, src_h, src_w, channels, src_pitch, mx, map_x_pitch, my, map_y_pitch, out_h, out_w, out,
                   out_pitch, mask, mask_pitch);
      break;
    case 4:
      warp_rows<4>(src, src_h, src_w, channels, src_pitch, mx, map_x_pitch, my, map_y_pitch, out_h, out_w, out,
                   out_pitch, mask, mask_pitch);
      break;
    default:
      warp_rows<0>(src, src_h, src_w, channels, src_pitch, mx, map_x_pitch, my, map_y_pitch, out_h, out_w, out,
                   out_pitch, mask, mask_pitch);
  }
  return ok();
}

SKYFIX_API int skyfix_f32_to_f16(const float* src, uint16_t* dst, int64_t count) {
  using namespace skyfix;
  if (src == nullptr || dst == nullptr) return fail(SKYFIX_ERR_ARGUMENT, "f32_to_f16: src or dst is NULL");
  if (count < 0) return fail(SKYFIX_ERR_ARGUMENT, "f32_to_f16: count must be >= 0, got %lld",
                             static_cast<long long>(count));
  for (int64_t i = 0; i < count; ++i) dst[i] = f32_to_f16(src[i]);
  return ok();
}

SKYFIX_API int skyfix_normalize_u8(const uint8_t* src, int64_t n, int64_t h, int64_t w, int64_t c,
                                   int64_t src_row_pitch, int64_t src_image_pitch, const float* mean,
                                   const float* std, int format, int flags, void* dst) {
  using namespace skyfix;
  float scale[SKYFIX_MAX_CHANNELS], shift[SKYFIX_MAX_CHANNELS];
  const int rc = check_normalize(src, n, h, w, c, src_row_pitch, src_image_pitch, mean, std, format, flags, dst,
                                 scale, shift);
  if (rc != SKYFIX_OK) return rc;
  const bool reverse = (flags & SKYFIX_NORM_REVERSE_CHANNELS) != 0;
  if (format == SKYFIX_FORMAT_U8_NHWC) {
    auto* out = static_cast<uint8_t*>(dst);
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t y = 0; y < h; ++y) {
        const uint8_t* s = src + i * src_image_pitch + y * src_row_pitch;
        uint8_t* o = out + ((i * h + y) * w) * c;
        if (!reverse) {
          std::memcpy(o, s, static_cast<size_t>(w * c));
          continue;
        }
        for (int64_t x = 0; x < w; ++x) {
          for (int64_t k = 0; k < c; ++k) o[x * c + k] = s[x * c + (c - 1 - k)];
        }
      }
    }
    return ok();
  }
  // one table per output channel: 256 values, each x * scale - shift in float32 (two roundings, as numpy)
  float lut[SKYFIX_MAX_CHANNELS][256];
  uint16_t lut16[SKYFIX_MAX_CHANNELS][256];
  for (int64_t k = 0; k < c; ++k) {  // mean and std are in the OUTPUT channel order
    for (int v = 0; v < 256; ++v) {
      const float prod = static_cast<float>(v) * scale[k];
      lut[k][v] = prod - shift[k];
      lut16[k][v] = f32_to_f16(lut[k][v]);
    }
  }
  const int64_t plane = h * w;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t k = 0; k < c; ++k) {
      const int64_t ci = reverse ? c - 1 - k : k;
      const int64_t base = (i * c + k) * plane;
      for (int64_t y = 0; y < h; ++y) {
        const uint8_t* s = src + i * src_image_pitch + y * src_row_pitch + ci;
        if (format == SKYFIX_FORMAT_F32_NCHW) {
          float* o = static_cast<float*>(dst) + base + y * w;
          const float* tab = lut[k];
          for (int64_t x = 0; x < w; ++x) o[x] = tab[s[x * c]];
        } else {
          uint16_t* o = static_cast<uint16_t*>(dst) + base + y * w;
          const uint16_t* tab = lut16[k];
          for (int64_t x = 0; x < w; ++x) o[x] = tab[s[x * c]];
        }
      }
    }
  }
  return ok();
}

}  // extern "C"
