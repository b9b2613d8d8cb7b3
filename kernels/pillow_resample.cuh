// Shared helpers for the preprocessing kernels: Pillow's 8-bit fixed-point
// resampling arithmetic (libImaging/Resample.c) and camera pixel decoding.
// Mirrors src/preprocess/resize.rs and src/capture/convert.rs exactly.
#pragma once

typedef unsigned char u8;

// Pillow: PRECISION_BITS = 32 - 8 - 2.
#define MVLA_PRECISION_BITS 22

// Input pixel formats (src/preprocess/cuda.rs `InputFormat`).
#define MVLA_FORMAT_PACKED3 0  // packed 3-channel u8, frame's channel order kept
#define MVLA_FORMAT_YUYV 1     // YUYV 4:2:2 -> BGR (OpenCV BT.601 limited range)
#define MVLA_FORMAT_NV12 2     // NV12 4:2:0: Y plane (pitch bytes/row), then interleaved UV rows

__device__ __forceinline__ u8 mvla_clip8(int acc) {
    if (acc <= 0) return 0;
    if (acc >= (1 << MVLA_PRECISION_BITS << 8)) return 255;
    return (u8)(acc >> MVLA_PRECISION_BITS);
}

__device__ __forceinline__ u8 mvla_sat_shift20(int v) {
    v >>= 20;
    return (u8)(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// Pixel (x, y) of the source frame as 3 bytes (BGR for YUYV and NV12 input).
// `in_h` locates NV12's chroma plane (it follows in_h luma rows).
__device__ __forceinline__ void mvla_load_pixel(const u8* src, int format, int pitch, int in_h, int x, int y, int out[3]) {
    if (format == MVLA_FORMAT_YUYV || format == MVLA_FORMAT_NV12) {
        int yv, u, v;
        if (format == MVLA_FORMAT_YUYV) {
            const u8* pair = src + (long)y * pitch + (x >> 1) * 4;
            yv = pair[(x & 1) * 2];
            u = (int)pair[1] - 128;
            v = (int)pair[3] - 128;
        } else {
            yv = src[(long)y * pitch + x];
            const u8* uv = src + (long)(in_h + (y >> 1)) * pitch + (x & ~1);
            u = (int)uv[0] - 128;
            v = (int)uv[1] - 128;
        }
        // OpenCV ITUR_BT_601 fixed point, 20-bit shift.
        const int round = 1 << 19;
        int ruv = round + 1673527 * v;
        int guv = round + -852492 * v + -409993 * u;
        int buv = round + 2116026 * u;
        int yy = max(yv - 16, 0) * 1220542;
        out[0] = mvla_sat_shift20(yy + buv);
        out[1] = mvla_sat_shift20(yy + guv);
        out[2] = mvla_sat_shift20(yy + ruv);
    } else {
        const u8* p = src + (long)y * pitch + x * 3;
        out[0] = p[0];
        out[1] = p[1];
        out[2] = p[2];
    }
}

// IEEE fp16 bits, round to nearest even (PTX cvt; no header needed under NVRTC).
// The host emulation (host_emulation.h) provides the same instruction by name.
__device__ __forceinline__ unsigned short mvla_float_to_half(float f) {
#ifdef MVLA_HOST_EMULATION
    return mvla_host_cvt_rn_f16_f32(f);
#else
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#endif
}
