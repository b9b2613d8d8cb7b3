// Host emulation of the CUDA subset the preprocessing kernels use, so the
// unchanged .cu sources run on the CPU (tests and CI have no GPU).
//
// Why this is faithful: the kernels use no shared memory, no barrier, no warp
// intrinsic and no atomic, so one GPU thread is exactly one call of the kernel
// function with threadIdx/blockIdx set; the order threads run in cannot
// matter (kernels/host_emulation.cpp runs them shuffled on several host
// threads to show it). Float arithmetic: the NVRTC options (cuda.rs) are
// IEEE division, no FMA contraction, no flush-to-zero, which is what this
// header's compile flags (build.rs: -ffp-contract=off, no fast math; x86-64
// SSE floats) give on the host; tests/cuda_kernels.rs checks the PTX for it.
//
// What cannot be emulated this way must fail to compile, never be faked:
// shared memory, barriers, warp shuffles/votes, atomics and any other inline
// PTX stop the build with a message naming the construct.
#pragma once

#include <cstdint>
#include <cstring>

#define MVLA_HOST_EMULATION 1

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

// Per host thread: the launcher sets them before each kernel call.
inline thread_local dim3 threadIdx;
inline thread_local dim3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict

// Constructs one-call-per-thread cannot emulate: a compile error, by name.
#define __shared__ _Pragma("GCC error \"host emulation: __shared__ memory needs cooperating threads and cannot be emulated\"")
#define __syncthreads() _Pragma("GCC error \"host emulation: __syncthreads() cannot be emulated\"") 0
#define __syncwarp(...) _Pragma("GCC error \"host emulation: __syncwarp() cannot be emulated\"") 0
#define __shfl_sync(...) _Pragma("GCC error \"host emulation: warp shuffles cannot be emulated\"") 0
#define __shfl_up_sync(...) _Pragma("GCC error \"host emulation: warp shuffles cannot be emulated\"") 0
#define __shfl_down_sync(...) _Pragma("GCC error \"host emulation: warp shuffles cannot be emulated\"") 0
#define __shfl_xor_sync(...) _Pragma("GCC error \"host emulation: warp shuffles cannot be emulated\"") 0
#define __ballot_sync(...) _Pragma("GCC error \"host emulation: warp votes cannot be emulated\"") 0
#define __any_sync(...) _Pragma("GCC error \"host emulation: warp votes cannot be emulated\"") 0
#define __all_sync(...) _Pragma("GCC error \"host emulation: warp votes cannot be emulated\"") 0
#define atomicAdd(...) _Pragma("GCC error \"host emulation: atomics are not emulated\"") 0
#define atomicCAS(...) _Pragma("GCC error \"host emulation: atomics are not emulated\"") 0
#define __threadfence() _Pragma("GCC error \"host emulation: memory fences are not emulated\"") 0
// Inline PTX: the kernels' one conversion is provided below by name
// (pillow_resample.cuh selects it under MVLA_HOST_EMULATION); any other asm
// statement is refused.
#define asm(...) _Pragma("GCC error \"host emulation: inline PTX is not emulated\"")

// CUDA's integer max (device math library).
static inline int max(int a, int b) { return a > b ? a : b; }
static inline int min(int a, int b) { return a < b ? a : b; }

// PTX `cvt.rn.f16.f32`: f32 -> IEEE binary16 bits, round to nearest, ties to
// even; overflow gives infinity; subnormal halves are produced (PTX cvt to
// f16 does not flush); NaN gives a quiet NaN (the kernels never make one:
// model.json std values are validated positive and finite).
static inline unsigned short mvla_host_cvt_rn_f16_f32(float f) {
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return (unsigned short)(sign | 0x7e00u);  // NaN
    if (ax >= 0x38800000u) {
        // Normal half range (|f| >= 2^-14): re-bias the exponent (127 -> 15),
        // round the 13 dropped mantissa bits to nearest even; a carry moves
        // into the exponent, and anything >= 65520 ends at 0x7c00 (infinity).
        uint32_t r = (ax - 0x38000000u + 0xfffu + ((ax >> 13) & 1u)) >> 13;
        if (r > 0x7c00u) r = 0x7c00u;
        return (unsigned short)(sign | r);
    }
    if (ax <= 0x33000000u) return (unsigned short)sign;  // <= 2^-25 rounds to (signed) zero
    // Subnormal half: value * 2^24 rounded to nearest even.
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - (ax >> 23);  // 14..24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t halfway = 1u << (shift - 1u);
    if (rem > halfway || (rem == halfway && (q & 1u))) ++q;
    return (unsigned short)(sign | q);
}
