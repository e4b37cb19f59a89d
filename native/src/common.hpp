// Internals shared by the host and the CUDA implementations: the thread-local error message, argument checks
// (the same messages whichever path is called) and the normalisation constants.
#ifndef SKYFIX_NATIVE_COMMON_HPP
#define SKYFIX_NATIVE_COMMON_HPP

#include <cstdint>

#include "skyfix_native.h"

namespace skyfix {

// Largest image side accepted (the CUDA kernels index rows and columns with 32-bit ints).
constexpr int64_t kMaxSide = (int64_t{1} << 30);
// Largest row pitch in bytes, and the largest array in bytes (so that offsets never overflow int64).
constexpr int64_t kMaxPitch = (int64_t{1} << 32);
constexpr int64_t kMaxBytes = (int64_t{1} << 62);
// A window or template whose variance under the mask is at most this times its mean square is "constant to float
// precision": the correlation is undefined there (NaN).
constexpr double kFlatRelVariance = 1e-12;

// Store a printf-style message as this thread's last error and return code.
int fail(int code, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
// Clear this thread's last error and return SKYFIX_OK.
int ok();

int check_warp(const void* src, int64_t src_h, int64_t src_w, int64_t channels, int64_t src_pitch,
               const void* map_x, int64_t map_x_pitch, const void* map_y, int64_t map_y_pitch, int64_t out_h,
               int64_t out_w, const void* out, int64_t out_pitch, const void* mask, int64_t mask_pitch);

// Checks the arguments and, for the float formats, fills scale[c] = 1 / (255 std) and shift[c] = mean / std
// (float32 operations, as the numpy path computes them).
int check_normalize(const void* src, int64_t n, int64_t h, int64_t w, int64_t c, int64_t src_row_pitch,
                    int64_t src_image_pitch, const float* mean, const float* std, int format, int flags,
                    const void* dst, float* scale, float* shift);

int check_match(const void* image, int64_t image_h, int64_t image_w, int64_t image_pitch, const void* templ,
                int64_t templ_h, int64_t templ_w, int64_t templ_pitch, const void* mask, int64_t mask_pitch,
                const void* result, int64_t result_pitch);

}  // namespace skyfix

#endif
