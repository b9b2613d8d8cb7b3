// Op 2 of 2: Pillow vertical pass + channel order + normalisation, written as
// planar CHW straight into the engine's input buffer (fp32 or fp16).
// One thread per output pixel.
#include "pillow_resample.cuh"

extern "C" __global__ void mvla_resample_vertical_normalize(
    const u8* __restrict__ tmp, int out_w, int out_h,
    const int* __restrict__ start, const int* __restrict__ len, const int* __restrict__ weights, int stride,
    int swap_channels, float mean0, float mean1, float mean2, float std0, float std1, float std2,
    int fp16, float* __restrict__ out32, unsigned short* __restrict__ out16)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    const int* k = weights + y * stride;
    int y0 = start[y];  // relative to the intermediate image's first row
    int n = len[y];
    const int round = 1 << (MVLA_PRECISION_BITS - 1);
    int s[3] = {round, round, round};
    for (int i = 0; i < n; ++i) {
        const u8* p = tmp + ((long)(y0 + i) * out_w + x) * 3;
        s[0] += p[0] * k[i];
        s[1] += p[1] * k[i];
        s[2] += p[2] * k[i];
    }
    float mean[3] = {mean0, mean1, mean2};
    float sd[3] = {std0, std1, std2};
    long plane = (long)out_w * out_h;
    for (int c = 0; c < 3; ++c) {
        int src_c = swap_channels ? 2 - c : c;
        // Same float operations, in the same order, as the CPU twin.
        float v = ((float)mvla_clip8(s[src_c]) / 255.0f - mean[c]) / sd[c];
        long idx = c * plane + (long)y * out_w + x;
        if (fp16) {
            out16[idx] = mvla_float_to_half(v);
        } else {
            out32[idx] = v;
        }
    }
}
