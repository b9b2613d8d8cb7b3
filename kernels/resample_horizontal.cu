// Op 1 of 2: decode (packed BGR/RGB, YUYV or NV12) + optional 180-degree rotation + Pillow horizontal pass.
// One thread per (output column, intermediate row). Writes the u8
// intermediate image (rows x out_w x 3) that Pillow's vertical pass reads.
#include "pillow_resample.cuh"

extern "C" __global__ void mvla_resample_horizontal(
    const u8* __restrict__ src, int format, int in_w, int in_h, int pitch, int rotate180,
    const int* __restrict__ start, const int* __restrict__ len, const int* __restrict__ weights, int stride,
    int out_w, int first_row, int rows, u8* __restrict__ tmp)
{
    int xo = blockIdx.x * blockDim.x + threadIdx.x;
    int r = blockIdx.y * blockDim.y + threadIdx.y;
    if (xo >= out_w || r >= rows) return;
    int y = first_row + r;  // row in the rotated image
    int sy = rotate180 ? (in_h - 1 - y) : y;
    const int* k = weights + xo * stride;
    int x0 = start[xo];
    int n = len[xo];
    const int round = 1 << (MVLA_PRECISION_BITS - 1);
    int s0 = round, s1 = round, s2 = round;
    for (int i = 0; i < n; ++i) {
        int x = x0 + i;  // column in the rotated image
        int sx = rotate180 ? (in_w - 1 - x) : x;
        int px[3];
        mvla_load_pixel(src, format, pitch, in_h, sx, sy, px);
        s0 += px[0] * k[i];
        s1 += px[1] * k[i];
        s2 += px[2] * k[i];
    }
    u8* o = tmp + ((long)r * out_w + xo) * 3;
    o[0] = mvla_clip8(s0);
    o[1] = mvla_clip8(s1);
    o[2] = mvla_clip8(s2);
}
