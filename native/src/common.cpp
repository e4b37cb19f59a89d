// Error state, argument checks and library information.
#include "common.hpp"

#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <string>

#ifndef SKYFIX_NATIVE_VERSION_STRING
#define SKYFIX_NATIVE_VERSION_STRING "0.0.0"
#endif
#ifndef SKYFIX_NATIVE_CUDA_ARCHS
#define SKYFIX_NATIVE_CUDA_ARCHS ""
#endif

namespace skyfix {
namespace {
thread_local std::string g_last_error;

// "name must be >= 1" style checks; return the error code or 0.
int positive(const char* what, const char* name, int64_t v) {
  if (v < 1 || v > kMaxSide) {
    return fail(SKYFIX_ERR_ARGUMENT, "%s: %s must be in [1, %lld], got %lld", what, name,
                static_cast<long long>(kMaxSide), static_cast<long long>(v));
  }
  return SKYFIX_OK;
}

int not_null(const char* what, const char* name, const void* p) {
  if (p == nullptr) return fail(SKYFIX_ERR_ARGUMENT, "%s: %s is NULL", what, name);
  return SKYFIX_OK;
}

// A pitch of at least min_bytes (one row, or one image), at most max_bytes, a multiple of align (the element size).
int pitch_ok(const char* what, const char* name, int64_t pitch, int64_t min_bytes, int64_t align,
             int64_t max_bytes = kMaxPitch) {
  if (pitch < min_bytes || pitch > max_bytes || pitch % align != 0) {
    return fail(SKYFIX_ERR_ARGUMENT,
                "%s: %s must be in [%lld, %lld] bytes and a multiple of %lld, got %lld", what, name,
                static_cast<long long>(min_bytes), static_cast<long long>(max_bytes),
                static_cast<long long>(align), static_cast<long long>(pitch));
  }
  return SKYFIX_OK;
}

int channels_ok(const char* what, int64_t c) {
  if (c < 1 || c > SKYFIX_MAX_CHANNELS) {
    return fail(SKYFIX_ERR_ARGUMENT, "%s: channels must be in [1, %d], got %lld", what, SKYFIX_MAX_CHANNELS,
                static_cast<long long>(c));
  }
  return SKYFIX_OK;
}
}  // namespace

int fail(int code, const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  g_last_error = buf;
  return code;
}

int ok() {
  g_last_error.clear();
  return SKYFIX_OK;
}

#define SKYFIX_TRY(expr)          \
  do {                            \
    int rc_ = (expr);             \
    if (rc_ != SKYFIX_OK) return rc_; \
  } while (0)

int check_warp(const void* src, int64_t src_h, int64_t src_w, int64_t channels, int64_t src_pitch,
               const void* map_x, int64_t map_x_pitch, const void* map_y, int64_t map_y_pitch, int64_t out_h,
               int64_t out_w, const void* out, int64_t out_pitch, const void* mask, int64_t mask_pitch) {
  const char* w = "warp";
  SKYFIX_TRY(not_null(w, "src", src));
  SKYFIX_TRY(not_null(w, "map_x", map_x));
  SKYFIX_TRY(not_null(w, "map_y", map_y));
  SKYFIX_TRY(not_null(w, "out", out));
  SKYFIX_TRY(positive(w, "src_h", src_h));
  SKYFIX_TRY(positive(w, "src_w", src_w));
  SKYFIX_TRY(positive(w, "out_h", out_h));
  SKYFIX_TRY(positive(w, "out_w", out_w));
  SKYFIX_TRY(channels_ok(w, channels));
  SKYFIX_TRY(pitch_ok(w, "src_pitch", src_pitch, src_w * channels, 1));
  SKYFIX_TRY(pitch_ok(w, "map_x_pitch", map_x_pitch, out_w * 4, 4));
  SKYFIX_TRY(pitch_ok(w, "map_y_pitch", map_y_pitch, out_w * 4, 4));
  SKYFIX_TRY(pitch_ok(w, "out_pitch", out_pitch, out_w * channels, 1));
  if (mask != nullptr) SKYFIX_TRY(pitch_ok(w, "mask_pitch", mask_pitch, out_w, 1));
  return SKYFIX_OK;
}

int check_normalize(const void* src, int64_t n, int64_t h, int64_t w, int64_t c, int64_t src_row_pitch,
                    int64_t src_image_pitch, const float* mean, const float* std, int format, int flags,
                    const void* dst, float* scale, float* shift) {
  const char* what = "normalize";
  SKYFIX_TRY(not_null(what, "src", src));
  SKYFIX_TRY(not_null(what, "dst", dst));
  SKYFIX_TRY(positive(what, "n", n));
  SKYFIX_TRY(positive(what, "h", h));
  SKYFIX_TRY(positive(what, "w", w));
  SKYFIX_TRY(channels_ok(what, c));
  SKYFIX_TRY(pitch_ok(what, "src_row_pitch", src_row_pitch, w * c, 1));
  SKYFIX_TRY(pitch_ok(what, "src_image_pitch", src_image_pitch, (h - 1) * src_row_pitch + w * c, 1,
                      kMaxBytes / n));
  if (format != SKYFIX_FORMAT_F32_NCHW && format != SKYFIX_FORMAT_F16_NCHW && format != SKYFIX_FORMAT_U8_NHWC) {
    return fail(SKYFIX_ERR_ARGUMENT,
                "normalize: format must be %d (float32 NCHW), %d (float16 NCHW) or %d (uint8 NHWC), got %d",
                SKYFIX_FORMAT_F32_NCHW, SKYFIX_FORMAT_F16_NCHW, SKYFIX_FORMAT_U8_NHWC, format);
  }
  if ((flags & ~SKYFIX_NORM_REVERSE_CHANNELS) != 0) {
    return fail(SKYFIX_ERR_ARGUMENT, "normalize: unknown flags 0x%x (known: 0x%x reverse channels)", flags,
                SKYFIX_NORM_REVERSE_CHANNELS);
  }
  if (format == SKYFIX_FORMAT_U8_NHWC) return SKYFIX_OK;
  SKYFIX_TRY(not_null(what, "mean", mean));
  SKYFIX_TRY(not_null(what, "std", std));
  for (int64_t k = 0; k < c; ++k) {
    if (!std::isfinite(mean[k]) || !std::isfinite(std[k]) || !(std[k] > 0.0f)) {
      return fail(SKYFIX_ERR_ARGUMENT,
                  "normalize: mean[%lld] must be finite and std[%lld] finite and > 0, got mean %g, std %g",
                  static_cast<long long>(k), static_cast<long long>(k), static_cast<double>(mean[k]),
                  static_cast<double>(std[k]));
    }
    const float s = 1.0f / (255.0f * std[k]);
    const float t = mean[k] / std[k];
    if (!std::isfinite(s) || !std::isfinite(t)) {
      return fail(SKYFIX_ERR_ARGUMENT,
                  "normalize: 1 / (255 std[%lld]) or mean / std overflows float32 (mean %g, std %g); "
                  "use a larger std",
                  static_cast<long long>(k), static_cast<double>(mean[k]), static_cast<double>(std[k]));
    }
    scale[k] = s;
    shift[k] = t;
  }
  return SKYFIX_OK;
}

int check_match(const void* image, int64_t image_h, int64_t image_w, int64_t image_pitch, const void* templ,
                int64_t templ_h, int64_t templ_w, int64_t templ_pitch, const void* mask, int64_t mask_pitch,
                const void* result, int64_t result_pitch) {
  const char* w = "match_template";
  SKYFIX_TRY(not_null(w, "image", image));
  SKYFIX_TRY(not_null(w, "templ", templ));
  SKYFIX_TRY(not_null(w, "result", result));
  SKYFIX_TRY(positive(w, "image_h", image_h));
  SKYFIX_TRY(positive(w, "image_w", image_w));
  SKYFIX_TRY(positive(w, "templ_h", templ_h));
  SKYFIX_TRY(positive(w, "templ_w", templ_w));
  if (templ_h > image_h || templ_w > image_w) {
    return fail(SKYFIX_ERR_ARGUMENT, "match_template: the template (%lldx%lld, h x w) is larger than the image "
                "(%lldx%lld); the image must hold it", static_cast<long long>(templ_h),
                static_cast<long long>(templ_w), static_cast<long long>(image_h), static_cast<long long>(image_w));
  }
  SKYFIX_TRY(pitch_ok(w, "image_pitch", image_pitch, image_w * 4, 4));
  SKYFIX_TRY(pitch_ok(w, "templ_pitch", templ_pitch, templ_w * 4, 4));
  if (mask != nullptr) SKYFIX_TRY(pitch_ok(w, "mask_pitch", mask_pitch, templ_w, 1));
  SKYFIX_TRY(pitch_ok(w, "result_pitch", result_pitch, (image_w - templ_w + 1) * 4, 4));
  return SKYFIX_OK;
}

}  // namespace skyfix

extern "C" {

SKYFIX_API int skyfix_native_abi_version(void) { return SKYFIX_NATIVE_ABI_VERSION; }

SKYFIX_API const char* skyfix_native_version(void) { return SKYFIX_NATIVE_VERSION_STRING; }

SKYFIX_API const char* skyfix_native_last_error(void) { return skyfix::g_last_error.c_str(); }

SKYFIX_API const char* skyfix_native_cuda_architectures(void) { return SKYFIX_NATIVE_CUDA_ARCHS; }

}  // extern "C"
