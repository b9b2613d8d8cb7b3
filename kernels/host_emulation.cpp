// Runs the preprocessing kernels' unchanged CUDA source on the host: every
// GPU thread of every block is one call of the kernel function (see
// host_emulation.h for why that is exact for these kernels). Compiled by
// build.rs; called from src/preprocess/emulated.rs with the same launch plan
// (grid, block, argument list) that src/preprocess/cuda.rs gives the GPU.
//
// Standard headers first: host_emulation.h redefines `asm` and friends.
#include <cstddef>
#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

#include "host_emulation.h"
#include "resample_horizontal.cu"
#include "resample_vertical_normalize.cu"

namespace {

// Call `kernel` with its parameters taken from `params[i]`, which points at
// the i-th argument's value: the same convention as cuLaunchKernel's
// kernelParams, so Rust hands both executors the same list.
template <typename... A, std::size_t... I>
void call_with(void (*kernel)(A...), void** params, std::index_sequence<I...>) {
    kernel(*static_cast<A*>(params[I])...);
}

template <typename... A>
constexpr int arity(void (*)(A...)) {
    return (int)sizeof...(A);
}

template <typename... A>
void call(void (*kernel)(A...), void** params) {
    call_with(kernel, params, std::index_sequence_for<A...>{});
}

// splitmix64: a small deterministic generator for the shuffled thread order.
uint64_t next(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

}  // namespace

extern "C" {

// Kernel ids (src/preprocess/emulated.rs `Kernel`).
enum { MVLA_EMU_HORIZONTAL = 0, MVLA_EMU_VERTICAL = 1 };

// Arity of a kernel, so Rust can check its argument list against the
// kernel's real signature before any launch. -1: unknown kernel.
int mvla_emu_arity(int kernel) {
    switch (kernel) {
        case MVLA_EMU_HORIZONTAL: return arity(mvla_resample_horizontal);
        case MVLA_EMU_VERTICAL: return arity(mvla_resample_vertical_normalize);
        default: return -1;
    }
}

// Launch `kernel` over grid × block. Threads run in the natural order when
// `seed` is 0, else in an order shuffled by `seed`, spread over
// `host_threads` host threads (>= 1). Returns 0, or -1 for a bad kernel id
// or argument count.
int mvla_emu_launch(int kernel, const unsigned grid[3], const unsigned block[3], void** params,
                    int n_params, int host_threads, uint64_t seed) {
    if (mvla_emu_arity(kernel) < 0 || n_params != mvla_emu_arity(kernel) || host_threads < 1) {
        return -1;
    }
    const uint64_t per_block = (uint64_t)block[0] * block[1] * block[2];
    const uint64_t total = (uint64_t)grid[0] * grid[1] * grid[2] * per_block;
    std::vector<uint64_t> order(total);
    for (uint64_t i = 0; i < total; ++i) order[i] = i;
    if (seed != 0) {
        uint64_t s = seed;
        for (uint64_t i = total; i > 1; --i) std::swap(order[i - 1], order[next(s) % i]);
    }
    auto worker = [&](int w) {
        blockDim = dim3{block[0], block[1], block[2]};
        gridDim = dim3{grid[0], grid[1], grid[2]};
        for (uint64_t k = (uint64_t)w; k < total; k += (uint64_t)host_threads) {
            const uint64_t i = order[k];
            const uint64_t b = i / per_block, t = i % per_block;
            threadIdx = dim3{(unsigned)(t % block[0]), (unsigned)(t / block[0] % block[1]),
                             (unsigned)(t / block[0] / block[1])};
            blockIdx = dim3{(unsigned)(b % grid[0]), (unsigned)(b / grid[0] % grid[1]),
                            (unsigned)(b / grid[0] / grid[1])};
            if (kernel == MVLA_EMU_HORIZONTAL) {
                call(mvla_resample_horizontal, params);
            } else {
                call(mvla_resample_vertical_normalize, params);
            }
        }
    };
    if (host_threads == 1) {
        worker(0);
    } else {
        std::vector<std::thread> pool;
        for (int w = 0; w < host_threads; ++w) pool.emplace_back(worker, w);
        for (auto& t : pool) t.join();
    }
    return 0;
}

// The emulated PTX conversion, for the test against an independent f16 library.
unsigned short mvla_emu_cvt_rn_f16_f32(float f) { return mvla_host_cvt_rn_f16_f32(f); }

}  // extern "C"
