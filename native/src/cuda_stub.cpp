// The skyfix_cuda_* entry points of a library built without CUDA (SKYFIX_NATIVE_CUDA=OFF, or AUTO without a CUDA
// compiler): each returns SKYFIX_ERR_NO_CUDA with a message saying how to build the CUDA path.
#include "common.hpp"

namespace {
int no_cuda(const char* what) {
  return skyfix::fail(SKYFIX_ERR_NO_CUDA,
                      "%s: this skyfix_native library was built without CUDA; rebuild it on a machine with the "
                      "CUDA toolkit (nvcc): cmake -S . -B build/native -DSKYFIX_NATIVE_CUDA=ON && "
                      "cmake --build build/native -j",
                      what);
}
}  // namespace

extern "C" {

SKYFIX_API int skyfix_native_has_cuda(void) { return 0; }

SKYFIX_API int skyfix_cuda_device_count(int* count) {
  if (count != nullptr) *count = 0;
  return no_cuda("cuda_device_count");
}

SKYFIX_API int skyfix_cuda_device_info(int, char* name, int64_t name_size, int*, int*) {
  if (name != nullptr && name_size > 0) name[0] = '\0';
  return no_cuda("cuda_device_info");
}

SKYFIX_API int skyfix_cuda_set_device(int) { return no_cuda("cuda_set_device"); }

SKYFIX_API int skyfix_cuda_malloc(void** ptr, int64_t) {
  if (ptr != nullptr) *ptr = nullptr;
  return no_cuda("cuda_malloc");
}

SKYFIX_API int skyfix_cuda_free(void*) { return no_cuda("cuda_free"); }

SKYFIX_API int skyfix_cuda_memcpy_h2d(void*, const void*, int64_t) { return no_cuda("cuda_memcpy_h2d"); }

SKYFIX_API int skyfix_cuda_memcpy_d2h(void*, const void*, int64_t) { return no_cuda("cuda_memcpy_d2h"); }

SKYFIX_API int skyfix_cuda_synchronize(void*) { return no_cuda("cuda_synchronize"); }

SKYFIX_API int skyfix_cuda_warp_bilinear_u8(const uint8_t*, int64_t, int64_t, int64_t, int64_t, const float*, int64_t,
                                            const float*, int64_t, int64_t, int64_t, uint8_t*, int64_t, uint8_t*,
                                            int64_t, void*) {
  return no_cuda("cuda warp");
}

SKYFIX_API int skyfix_cuda_normalize_u8(const uint8_t*, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                                        const float*, const float*, int, int, void*, void*) {
  return no_cuda("cuda normalize");
}

SKYFIX_API int skyfix_cuda_match_template_ccoeff_normed(const float*, int64_t, int64_t, int64_t, const float*,
                                                        int64_t, int64_t, int64_t, const uint8_t*, int64_t, float*,
                                                        int64_t, void*) {
  return no_cuda("cuda match_template");
}

}  // extern "C"
