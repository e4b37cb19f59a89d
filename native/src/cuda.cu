// CUDA kernels of the three operations, on device pointers, queued on the caller's stream. Written for sm_72
// (Jetson Xavier) and newer: no feature beyond warp shuffles and double-precision shared memory.
//
// The warp and the normalisation use explicitly rounded intrinsics (__fmul_rn, __fadd_rn, ...) so that nvcc does
// not contract them into FMAs: their results equal the host functions' bit for bit.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstring>

#include "common.hpp"

namespace skyfix {
namespace {

constexpr int kBlock2D = 16;    // warp / normalise: 16 x 16 threads
constexpr int kMatchThreads = 256;  // correlation: one block of this many threads per output position

int cuda_fail(cudaError_t err, const char* what) {
  return fail(SKYFIX_ERR_CUDA, "%s failed: %s (%s)", what, cudaGetErrorString(err), cudaGetErrorName(err));
}

int launched(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return cuda_fail(err, what);
  return ok();
}

// ------------------------------------------------------------------------------------------------------ warp
__global__ void warp_kernel(const uint8_t* __restrict__ src, int src_h, int src_w, int cn, int64_t src_pitch,
                            const uint8_t* __restrict__ map_x, int64_t map_x_pitch, const uint8_t* __restrict__ map_y,
                            int64_t map_y_pitch, int out_h, int out_w, uint8_t* __restrict__ out, int64_t out_pitch,
                            uint8_t* __restrict__ mask, int64_t mask_pitch) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x;
  const int y = blockIdx.y * blockDim.y + threadIdx.y;
  if (x >= out_w || y >= out_h) return;
  const float sx = reinterpret_cast<const float*>(map_x + y * map_x_pitch)[x];
  const float sy = reinterpret_cast<const float*>(map_y + y * map_y_pitch)[x];
  const float x_hi = __fsub_rn(static_cast<float>(src_w), 0.5f);
  const float y_hi = __fsub_rn(static_cast<float>(src_h), 0.5f);
  const bool valid = sx >= -0.5f && sx <= x_hi && sy >= -0.5f && sy <= y_hi;
  uint8_t* px = out + y * out_pitch + static_cast<int64_t>(x) * cn;
  if (mask != nullptr) mask[y * mask_pitch + x] = valid ? 1 : 0;
  if (!valid) {
    for (int k = 0; k < cn; ++k) px[k] = 0;
    return;
  }
  const float fx = floorf(sx), fy = floorf(sy);
  const float ax = __fsub_rn(sx, fx), ay = __fsub_rn(sy, fy);
  const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
  const int xa = max(x0, 0), xb = min(x0 + 1, src_w - 1);
  const int ya = max(y0, 0), yb = min(y0 + 1, src_h - 1);
  const uint8_t* ra = src + ya * src_pitch;
  const uint8_t* rb = src + yb * src_pitch;
  for (int k = 0; k < cn; ++k) {
    const float a = ra[xa * cn + k], b = ra[xb * cn + k], c = rb[xa * cn + k], d = rb[xb * cn + k];
    const float top = __fadd_rn(a, __fmul_rn(ax, __fsub_rn(b, a)));
    const float bot = __fadd_rn(c, __fmul_rn(ax, __fsub_rn(d, c)));
    const int v = __float2int_rn(__fadd_rn(top, __fmul_rn(ay, __fsub_rn(bot, top))));
    px[k] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
}

// ------------------------------------------------------------------------------------------------- normalise
struct NormParams {
  float scale[SKYFIX_MAX_CHANNELS];
  float shift[SKYFIX_MAX_CHANNELS];
};

// a[k] without indexing the kernel parameter dynamically (which would copy it to local memory)
__device__ __forceinline__ float pick(const float (&a)[SKYFIX_MAX_CHANNELS], int k) {
  return k == 0 ? a[0] : (k == 1 ? a[1] : (k == 2 ? a[2] : a[3]));
}

// One thread per output element (n, k, y, x) of NCHW: coalesced writes, strided reads of the interleaved source.
__global__ void normalize_kernel(const uint8_t* __restrict__ src, int64_t n, int h, int w, int c, int64_t row_pitch,
                                 int64_t image_pitch, NormParams p, int format, int reverse, void* __restrict__ dst) {
  const int64_t total = n * c * static_cast<int64_t>(h) * w;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int x = static_cast<int>(i % w);
    int64_t t = i / w;
    const int y = static_cast<int>(t % h);
    t /= h;
    const int k = static_cast<int>(t % c);
    const int64_t img = t / c;
    const int ci = reverse ? c - 1 - k : k;
    const float v = src[img * image_pitch + y * row_pitch + static_cast<int64_t>(x) * c + ci];
    const float f = __fsub_rn(__fmul_rn(v, pick(p.scale, k)), pick(p.shift, k));
    if (format == SKYFIX_FORMAT_F32_NCHW) {
      static_cast<float*>(dst)[i] = f;
    } else {
      static_cast<__half*>(dst)[i] = __float2half_rn(f);
    }
  }
}

// uint8 NHWC pitched -> contiguous, channels optionally reversed.
__global__ void copy_nhwc_kernel(const uint8_t* __restrict__ src, int64_t n, int h, int w, int c, int64_t row_pitch,
                                 int64_t image_pitch, int reverse, uint8_t* __restrict__ dst) {
  const int64_t total = n * static_cast<int64_t>(h) * w * c;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int k = static_cast<int>(i % c);
    int64_t t = i / c;
    const int x = static_cast<int>(t % w);
    t /= w;
    const int y = static_cast<int>(t % h);
    const int64_t img = t / h;
    const int ci = reverse ? c - 1 - k : k;
    dst[i] = src[img * image_pitch + y * row_pitch + static_cast<int64_t>(x) * c + ci];
  }
}

// ------------------------------------------------------------------------------------------------------ NCC
template <int N>
struct Sums {
  double v[N];
};

// Block-wide sum of N doubles (warp shuffles, then one value per warp in shared memory); every thread gets it.
template <int N>
__device__ Sums<N> block_sum(Sums<N> s) {
  __shared__ double part[N][kMatchThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int j = 0; j < N; ++j) {
    for (int off = 16; off > 0; off >>= 1) s.v[j] += __shfl_down_sync(0xffffffffu, s.v[j], off);
    if (lane == 0) part[j][warp] = s.v[j];
  }
  __syncthreads();
  Sums<N> total;
  for (int j = 0; j < N; ++j) {
    total.v[j] = 0.0;
    for (int k = 0; k < kMatchThreads / 32; ++k) total.v[j] += part[j][k];
  }
  __syncthreads();  // part may be reused by the next call
  return total;
}

// One block per output position: pass 1 the template's and the window's masked sums (means, mean squares), pass 2
// the centred products. Per-thread partial sums in float (a few dozen terms each), block sums in double.
__global__ void match_kernel(const uint8_t* __restrict__ image, int64_t image_pitch, const uint8_t* __restrict__ templ,
                             int th, int tw, int64_t templ_pitch, const uint8_t* __restrict__ mask, int64_t mask_pitch,
                             uint8_t* __restrict__ result, int64_t result_pitch, int nx, double flat) {
  const int ox = static_cast<int>(blockIdx.x % nx), oy = static_cast<int>(blockIdx.x / nx);
  const int count = th * tw;
  float n = 0.f, st = 0.f, st2 = 0.f, si = 0.f, si2 = 0.f;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int r = i / tw, c = i - r * tw;
    if (mask != nullptr && mask[r * mask_pitch + c] == 0) continue;
    const float t = reinterpret_cast<const float*>(templ + r * templ_pitch)[c];
    const float v = reinterpret_cast<const float*>(image + (oy + r) * image_pitch)[ox + c];
    n += 1.f;
    st += t;
    st2 += t * t;
    si += v;
    si2 += v * v;
  }
  const Sums<5> a = block_sum<5>({{n, st, st2, si, si2}});
  float* out = reinterpret_cast<float*>(result + oy * result_pitch) + ox;
  const double cnt = a.v[0];
  if (cnt == 0.0) {
    if (threadIdx.x == 0) *out = __int_as_float(0x7fc00000);
    return;
  }
  const float t_mean = static_cast<float>(a.v[1] / cnt), i_mean = static_cast<float>(a.v[3] / cnt);
  float sxy = 0.f, sxx = 0.f, syy = 0.f;
  for (int i = threadIdx.x; i < count; i += blockDim.x) {
    const int r = i / tw, c = i - r * tw;
    if (mask != nullptr && mask[r * mask_pitch + c] == 0) continue;
    const float dt = reinterpret_cast<const float*>(templ + r * templ_pitch)[c] - t_mean;
    const float di = reinterpret_cast<const float*>(image + (oy + r) * image_pitch)[ox + c] - i_mean;
    sxy += dt * di;
    sxx += dt * dt;
    syy += di * di;
  }
  const Sums<3> b = block_sum<3>({{sxy, sxx, syy}});
  if (threadIdx.x != 0) return;
  if (!(b.v[1] > flat * a.v[2]) || !(b.v[2] > flat * a.v[4])) {
    *out = __int_as_float(0x7fc00000);
    return;
  }
  *out = static_cast<float>(b.v[0] / sqrt(b.v[1] * b.v[2]));
}

unsigned grid_1d(int64_t total, int threads) {
  const int64_t blocks = (total + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65535 * 16 ? blocks : 65535 * 16);  // grid-stride loops do the rest
}

}  // namespace
}  // namespace skyfix

extern "C" {

SKYFIX_API int skyfix_native_has_cuda(void) { return 1; }

SKYFIX_API int skyfix_cuda_device_count(int* count) {
  using namespace skyfix;
  if (count == nullptr) return fail(SKYFIX_ERR_ARGUMENT, "cuda_device_count: count is NULL");
  *count = 0;
  const cudaError_t err = cudaGetDeviceCount(count);
  if (err != cudaSuccess) {
    *count = 0;
    cudaGetLastError();  // reset the runtime's last error, so the next launch check does not report this one
    return cuda_fail(err, "cudaGetDeviceCount");
  }
  return ok();
}

SKYFIX_API int skyfix_cuda_device_info(int device, char* name, int64_t name_size, int* major, int* minor) {
  using namespace skyfix;
  if (name == nullptr || major == nullptr || minor == nullptr || name_size < 1) {
    return fail(SKYFIX_ERR_ARGUMENT, "cuda_device_info: name, major and minor must be non-NULL, name_size >= 1");
  }
  cudaDeviceProp prop;
  const cudaError_t err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) return cuda_fail(err, "cudaGetDeviceProperties");
  std::strncpy(name, prop.name, static_cast<size_t>(name_size - 1));
  name[name_size - 1] = '\0';
  *major = prop.major;
  *minor = prop.minor;
  return ok();
}

SKYFIX_API int skyfix_cuda_set_device(int device) {
  const cudaError_t err = cudaSetDevice(device);
  return err == cudaSuccess ? skyfix::ok() : skyfix::cuda_fail(err, "cudaSetDevice");
}

SKYFIX_API int skyfix_cuda_malloc(void** ptr, int64_t nbytes) {
  using namespace skyfix;
  if (ptr == nullptr || nbytes < 1) {
    return fail(SKYFIX_ERR_ARGUMENT, "cuda_malloc: ptr must be non-NULL and nbytes >= 1, got %lld",
                static_cast<long long>(nbytes));
  }
  const cudaError_t err = cudaMalloc(ptr, static_cast<size_t>(nbytes));
  return err == cudaSuccess ? ok() : cuda_fail(err, "cudaMalloc");
}

SKYFIX_API int skyfix_cuda_free(void* ptr) {
  const cudaError_t err = cudaFree(ptr);
  return err == cudaSuccess ? skyfix::ok() : skyfix::cuda_fail(err, "cudaFree");
}

SKYFIX_API int skyfix_cuda_memcpy_h2d(void* dst, const void* src, int64_t nbytes) {
  if (nbytes < 0) return skyfix::fail(SKYFIX_ERR_ARGUMENT, "cuda_memcpy_h2d: nbytes must be >= 0");
  const cudaError_t err = cudaMemcpy(dst, src, static_cast<size_t>(nbytes), cudaMemcpyHostToDevice);
  return err == cudaSuccess ? skyfix::ok() : skyfix::cuda_fail(err, "cudaMemcpy host to device");
}

SKYFIX_API int skyfix_cuda_memcpy_d2h(void* dst, const void* src, int64_t nbytes) {
  if (nbytes < 0) return skyfix::fail(SKYFIX_ERR_ARGUMENT, "cuda_memcpy_d2h: nbytes must be >= 0");
  const cudaError_t err = cudaMemcpy(dst, src, static_cast<size_t>(nbytes), cudaMemcpyDeviceToHost);
  return err == cudaSuccess ? skyfix::ok() : skyfix::cuda_fail(err, "cudaMemcpy device to host");
}

SKYFIX_API int skyfix_cuda_synchronize(void* stream) {
  const cudaError_t err = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  return err == cudaSuccess ? skyfix::ok() : skyfix::cuda_fail(err, "cudaStreamSynchronize");
}

SKYFIX_API int skyfix_cuda_warp_bilinear_u8(const uint8_t* src, int64_t src_h, int64_t src_w, int64_t channels,
                                            int64_t src_pitch, const float* map_x, int64_t map_x_pitch,
                                            const float* map_y, int64_t map_y_pitch, int64_t out_h, int64_t out_w,
                                            uint8_t* out, int64_t out_pitch, uint8_t* mask, int64_t mask_pitch,
                                            void* stream) {
  using namespace skyfix;
  const int rc = check_warp(src, src_h, src_w, channels, src_pitch, map_x, map_x_pitch, map_y, map_y_pitch, out_h,
                            out_w, out, out_pitch, mask, mask_pitch);
  if (rc != SKYFIX_OK) return rc;
  const dim3 block(kBlock2D, kBlock2D);
  const dim3 grid(static_cast<unsigned>((out_w + kBlock2D - 1) / kBlock2D),
                  static_cast<unsigned>((out_h + kBlock2D - 1) / kBlock2D));
  if (grid.y > 65535) return fail(SKYFIX_ERR_ARGUMENT, "cuda warp: out_h must be <= %d", 65535 * kBlock2D);
  warp_kernel<<<grid, block, 0, static_cast<cudaStream_t>(stream)>>>(
      src, static_cast<int>(src_h), static_cast<int>(src_w), static_cast<int>(channels), src_pitch,
      reinterpret_cast<const uint8_t*>(map_x), map_x_pitch, reinterpret_cast<const uint8_t*>(map_y), map_y_pitch,
      static_cast<int>(out_h), static_cast<int>(out_w), out, out_pitch, mask, mask_pitch);
  return launched("cuda warp kernel launch");
}

SKYFIX_API int skyfix_cuda_normalize_u8(const uint8_t* src, int64_t n, int64_t h, int64_t w, int64_t c,
                                        int64_t src_row_pitch, int64_t src_image_pitch, const float* mean,
                                        const float* std, int format, int flags, void* dst, void* stream) {
  using namespace skyfix;
  NormParams p{};
  const int rc = check_normalize(src, n, h, w, c, src_row_pitch, src_image_pitch, mean, std, format, flags, dst,
                                 p.scale, p.shift);
  if (rc != SKYFIX_OK) return rc;
  const int reverse = (flags & SKYFIX_NORM_REVERSE_CHANNELS) != 0;
  const int threads = 256;
  const unsigned blocks = grid_1d(n * c * h * w, threads);
  auto s = static_cast<cudaStream_t>(stream);
  if (format == SKYFIX_FORMAT_U8_NHWC) {
    copy_nhwc_kernel<<<blocks, threads, 0, s>>>(src, n, static_cast<int>(h), static_cast<int>(w),
                                                static_cast<int>(c), src_row_pitch, src_image_pitch, reverse,
                                                static_cast<uint8_t*>(dst));
  } else {
    normalize_kernel<<<blocks, threads, 0, s>>>(src, n, static_cast<int>(h), static_cast<int>(w),
                                                static_cast<int>(c), src_row_pitch, src_image_pitch, p, format,
                                                reverse, dst);
  }
  return launched("cuda normalize kernel launch");
}

SKYFIX_API int skyfix_cuda_match_template_ccoeff_normed(const float* image, int64_t image_h, int64_t image_w,
                                                        int64_t image_pitch, const float* templ, int64_t templ_h,
                                                        int64_t templ_w, int64_t templ_pitch, const uint8_t* mask,
                                                        int64_t mask_pitch, float* result, int64_t result_pitch,
                                                        void* stream) {
  using namespace skyfix;
  const int rc = check_match(image, image_h, image_w, image_pitch, templ, templ_h, templ_w, templ_pitch, mask,
                             mask_pitch, result, result_pitch);
  if (rc != SKYFIX_OK) return rc;
  const int64_t ny = image_h - templ_h + 1, nx = image_w - templ_w + 1;
  if (nx * ny > 0x7fffffff || templ_h * templ_w > 0x7fffffff) {
    return fail(SKYFIX_ERR_ARGUMENT, "cuda match_template: at most 2^31 - 1 output positions and template pixels, "
                "got %lld and %lld", static_cast<long long>(nx * ny), static_cast<long long>(templ_h * templ_w));
  }
  match_kernel<<<static_cast<unsigned>(nx * ny), kMatchThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const uint8_t*>(image), image_pitch, reinterpret_cast<const uint8_t*>(templ),
      static_cast<int>(templ_h), static_cast<int>(templ_w), templ_pitch, mask, mask_pitch,
      reinterpret_cast<uint8_t*>(result), result_pitch, static_cast<int>(nx), kFlatRelVariance);
  return launched("cuda match_template kernel launch");
}

}  // extern "C"
