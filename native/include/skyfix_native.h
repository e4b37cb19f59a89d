/*
 * skyfix_native: preprocessing for SkyFix deployments without torch (TensorRT on Jetson).
 *
 * A plain C ABI (no Python headers): every function returns a status (SKYFIX_OK or an error code) and, on error,
 * leaves a message for the calling thread in skyfix_native_last_error(). Sizes and strides are explicit, in
 * elements for sizes and in BYTES for row pitches (as CUDA's pitched memory and numpy's strides). Pixels of a row
 * are contiguous; the channels of a pixel are interleaved (HWC).
 *
 * Operations (host functions take host pointers; skyfix_cuda_* functions take device pointers and a stream):
 *   warp        bilinear resampling of a uint8 frame at per-pixel source coordinates (cv2.remap INTER_LINEAR,
 *               BORDER_REPLICATE) with a validity mask: coordinates outside the frame's pixel-edge bounds
 *               [-0.5, w - 0.5] x [-0.5, h - 0.5] (or not finite) give 0 and mask 0 (calibration.view.rectify's rule).
 *   normalize   uint8 NHWC -> float32/float16 NCHW  y = x * (1 / (255 std)) - mean / std  (float32 steps, no FMA),
 *               or a uint8 NHWC copy (engines that normalise inside the graph).
 *   match       masked normalised cross-correlation, cv2.matchTemplate(image, templ, TM_CCOEFF_NORMED, mask).
 *
 * Thread safety: every function may be called from several threads at once (no shared state; the error message
 * is thread-local).
 */
#ifndef SKYFIX_NATIVE_H
#define SKYFIX_NATIVE_H

#include <stdint.h>

#if defined(_WIN32)
#if defined(SKYFIX_NATIVE_BUILD)
#define SKYFIX_API __declspec(dllexport)
#else
#define SKYFIX_API __declspec(dllimport)
#endif
#else
#define SKYFIX_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a signature or a semantic of this header changes; the Python loader refuses another one. (Defined
 * only when not given on the command line: the loader's tests build a library of another version to see it refused.) */
#ifndef SKYFIX_NATIVE_ABI_VERSION
#define SKYFIX_NATIVE_ABI_VERSION 1
#endif

/* Status codes. */
#define SKYFIX_OK 0
#define SKYFIX_ERR_ARGUMENT 1 /* a null pointer, a bad size, pitch, channel count, dtype or flag */
#define SKYFIX_ERR_NO_CUDA 2  /* a skyfix_cuda_* function of a library built without CUDA */
#define SKYFIX_ERR_CUDA 3     /* a CUDA runtime error (no driver, no device, launch failure, out of memory) */
#define SKYFIX_ERR_MEMORY 4   /* host memory allocation failed */

/* Output formats of the normalisation. */
#define SKYFIX_FORMAT_F32_NCHW 0 /* float32[n, c, h, w] */
#define SKYFIX_FORMAT_F16_NCHW 1 /* IEEE half[n, c, h, w] (round to nearest even, as numpy's astype(float16)) */
#define SKYFIX_FORMAT_U8_NHWC 2  /* uint8[n, h, w, c] copy (mean/std unused, may be NULL) */

/* Normalisation flags. */
#define SKYFIX_NORM_REVERSE_CHANNELS 1 /* output channel k is input channel c - 1 - k (RGB <-> BGR) */

/* The most channels a warp or a normalisation takes. */
#define SKYFIX_MAX_CHANNELS 4

/* ---------------------------------------------------------------------------------------------- library */
SKYFIX_API int skyfix_native_abi_version(void);
/* "MAJOR.MINOR.PATCH" of the library. */
SKYFIX_API const char* skyfix_native_version(void);
/* The message of the last failed call on this thread ("" when none); valid until the next call on this thread. */
SKYFIX_API const char* skyfix_native_last_error(void);
/* 1 when the CUDA kernels are compiled in, else 0. */
SKYFIX_API int skyfix_native_has_cuda(void);
/* The CUDA architectures compiled in, comma-separated in CMake syntax, e.g. "87-real,90" ("" without CUDA). */
SKYFIX_API const char* skyfix_native_cuda_architectures(void);

/* ---------------------------------------------------------------------------------------------- host */
/*
 * Bilinear warp of src uint8[src_h, src_w, channels] (row pitch src_pitch bytes) at (map_x, map_y) float32[out_h,
 * out_w] (source pixel coordinates, pixel centres at integers) into out uint8[out_h, out_w, channels] and
 * mask uint8[out_h, out_w] (1 valid, 0 not; mask may be NULL). channels 1..4.
 */
SKYFIX_API int skyfix_warp_bilinear_u8(const uint8_t* src, int64_t src_h, int64_t src_w, int64_t channels,
                                       int64_t src_pitch, const float* map_x, int64_t map_x_pitch,
                                       const float* map_y, int64_t map_y_pitch, int64_t out_h, int64_t out_w,
                                       uint8_t* out, int64_t out_pitch, uint8_t* mask, int64_t mask_pitch);

/*
 * Normalisation of n images uint8[h, w, c] (row pitch src_row_pitch bytes, image pitch src_image_pitch bytes) into
 * a contiguous dst of format SKYFIX_FORMAT_*. mean, std: float32[c] (std > 0) for the float formats.
 */
SKYFIX_API int skyfix_normalize_u8(const uint8_t* src, int64_t n, int64_t h, int64_t w, int64_t c,
                                   int64_t src_row_pitch, int64_t src_image_pitch, const float* mean,
                                   const float* std, int format, int flags, void* dst);

/* float32 -> IEEE half bits, round to nearest even (overflow -> inf, NaN stays NaN); count elements. */
SKYFIX_API int skyfix_f32_to_f16(const float* src, uint16_t* dst, int64_t count);

/*
 * Masked TM_CCOEFF_NORMED of templ float32[templ_h, templ_w] over image float32[image_h, image_w] into result
 * float32[image_h - templ_h + 1, image_w - templ_w + 1]. mask uint8[templ_h, templ_w], nonzero = valid (NULL: all
 * valid). Results are NaN where the quantity is undefined: no valid pixel, a template or a window (under the mask)
 * constant to float precision (variance <= 1e-12 x mean square). Inputs must be finite.
 */
SKYFIX_API int skyfix_match_template_ccoeff_normed(const float* image, int64_t image_h, int64_t image_w,
                                                   int64_t image_pitch, const float* templ, int64_t templ_h,
                                                   int64_t templ_w, int64_t templ_pitch, const uint8_t* mask,
                                                   int64_t mask_pitch, float* result, int64_t result_pitch);

/* ---------------------------------------------------------------------------------------------- CUDA */
/* The same operations on device pointers (src, map_x, map_y, out, mask, dst, image, templ, result), queued on
 * stream (a cudaStream_t; NULL = the legacy default stream); mean and std stay HOST pointers (read at the call).
 * They return after the launch: synchronise the stream before reading the results. Results equal the host
 * functions' bit for bit for the warp and the normalisation (no FMA contraction); the correlation agrees to ~1e-6.
 * A library built without CUDA returns SKYFIX_ERR_NO_CUDA from all of them. The helpers below (device count and
 * info, malloc/free, blocking copies, synchronize) spare the caller a CUDA binding for simple uses and tests. */
SKYFIX_API int skyfix_cuda_device_count(int* count);
/* name: at least 256 bytes; major/minor: compute capability. */
SKYFIX_API int skyfix_cuda_device_info(int device, char* name, int64_t name_size, int* major, int* minor);
SKYFIX_API int skyfix_cuda_set_device(int device);
SKYFIX_API int skyfix_cuda_malloc(void** ptr, int64_t nbytes);
SKYFIX_API int skyfix_cuda_free(void* ptr);
SKYFIX_API int skyfix_cuda_memcpy_h2d(void* dst, const void* src, int64_t nbytes);
SKYFIX_API int skyfix_cuda_memcpy_d2h(void* dst, const void* src, int64_t nbytes);
SKYFIX_API int skyfix_cuda_synchronize(void* stream);

SKYFIX_API int skyfix_cuda_warp_bilinear_u8(const uint8_t* src, int64_t src_h, int64_t src_w, int64_t channels,
                                            int64_t src_pitch, const float* map_x, int64_t map_x_pitch,
                                            const float* map_y, int64_t map_y_pitch, int64_t out_h, int64_t out_w,
                                            uint8_t* out, int64_t out_pitch, uint8_t* mask, int64_t mask_pitch,
                                            void* stream);

SKYFIX_API int skyfix_cuda_normalize_u8(const uint8_t* src, int64_t n, int64_t h, int64_t w, int64_t c,
                                        int64_t src_row_pitch, int64_t src_image_pitch, const float* mean,
                                        const float* std, int format, int flags, void* dst, void* stream);

SKYFIX_API int skyfix_cuda_match_template_ccoeff_normed(const float* image, int64_t image_h, int64_t image_w,
                                                        int64_t image_pitch, const float* templ, int64_t templ_h,
                                                        int64_t templ_w, int64_t templ_pitch, const uint8_t* mask,
                                                        int64_t mask_pitch, float* result, int64_t result_pitch,
                                                        void* stream);

#ifdef __cplusplus
}
#endif

#endif /* SKYFIX_NATIVE_H */
