//! Pillow-exact antialiased bilinear resampling of packed 3-channel u8 images.
//!
//! The policy was trained on frames resized by `PIL.Image.resize(size,
//! Image.BILINEAR)`. When downscaling, Pillow widens the triangle filter by the
//! scale factor (a 1280→224 resize averages ~11 source pixels per output pixel,
//! not 2), and it works in two passes (horizontal, then vertical) with 22-bit
//! fixed-point coefficients and a rounded, clipped u8 image in between. This
//! module reproduces that arithmetic step for step (Pillow
//! `src/libImaging/Resample.c`: `precompute_coeffs`, `normalize_coeffs_8bpc`,
//! `ImagingResampleHorizontal_8bpc`, `ImagingResampleVertical_8bpc`,
//! `ImagingResampleInner`), so the output equals Pillow's byte for byte; the
//! committed Pillow references in `tests/fixtures/preprocess/` check that.

/// Fixed-point precision Pillow uses for 8-bit images: `32 - 8 - 2`.
const PRECISION_BITS: u32 = 22;

/// Filter taps for one axis: for output index `i`, source pixels
/// `start[i] .. start[i] + len[i]` weighted by `weights[i * stride ..]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisCoefficients {
    pub in_size: usize,
    pub out_size: usize,
    pub stride: usize,
    pub start: Vec<usize>,
    pub len: Vec<usize>,
    /// Fixed-point weights (`round(w * 2^22)`, Pillow's rounding).
    pub weights: Vec<i32>,
}

fn bilinear_filter(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

impl AxisCoefficients {
    /// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the full box
    /// `[0, in_size)` and the bilinear filter (support 1).
    pub fn bilinear(in_size: usize, out_size: usize) -> Self {
        assert!(
            in_size > 0 && out_size > 0,
            "resize to or from an empty axis"
        );
        let scale = in_size as f64 / out_size as f64;
        let filterscale = scale.max(1.0);
        let support = filterscale; // bilinear support (1.0) * filterscale
        let stride = support.ceil() as usize * 2 + 1;
        let mut start = Vec::with_capacity(out_size);
        let mut len = Vec::with_capacity(out_size);
        let mut weights = vec![0i32; out_size * stride];
        let mut taps = vec![0f64; stride];
        for xx in 0..out_size {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            // C `(int)` truncates toward zero; negatives are clamped to 0 right after.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let n = xmax - xmin;
            let mut ww = 0.0;
            for (x, tap) in taps.iter_mut().enumerate().take(n) {
                let w = bilinear_filter((x as f64 + xmin as f64 - center + 0.5) * ss);
                *tap = w;
                ww += w;
            }
            for (x, &tap) in taps.iter().enumerate().take(n) {
                let w = if ww != 0.0 { tap / ww } else { tap };
                let fixed = w * f64::from(1u32 << PRECISION_BITS);
                weights[xx * stride + x] = if w < 0.0 {
                    (fixed - 0.5) as i32
                } else {
                    (fixed + 0.5) as i32
                };
            }
            start.push(xmin);
            len.push(n);
        }
        Self {
            in_size,
            out_size,
            stride,
            start,
            len,
            weights,
        }
    }

    /// First and one-past-last source index any output index reads.
    fn source_span(&self) -> (usize, usize) {
        let last = self.out_size - 1;
        (self.start[0], self.start[last] + self.len[last])
    }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    if acc <= 0 {
        0
    } else if acc >= (1 << PRECISION_BITS << 8) {
        255
    } else {
        (acc >> PRECISION_BITS) as u8
    }
}

/// Precomputed plan for resizing `in_w × in_h` packed RGB-like images to
/// `out_w × out_h`, with its scratch buffer. Allocates in `new` only.
#[derive(Debug, Clone)]
pub struct PillowBilinear {
    pub horizontal: AxisCoefficients,
    pub vertical: AxisCoefficients,
    scratch: Vec<u8>,
}

impl PillowBilinear {
    pub fn new(in_w: usize, in_h: usize, out_w: usize, out_h: usize) -> Self {
        let horizontal = AxisCoefficients::bilinear(in_w, out_w);
        let vertical = AxisCoefficients::bilinear(in_h, out_h);
        let (y0, y1) = vertical.source_span();
        let scratch = vec![0u8; out_w * (y1 - y0) * 3];
        Self {
            horizontal,
            vertical,
            scratch,
        }
    }

    pub fn in_size(&self) -> (usize, usize) {
        (self.horizontal.in_size, self.vertical.in_size)
    }

    pub fn out_size(&self) -> (usize, usize) {
        (self.horizontal.out_size, self.vertical.out_size)
    }

    /// Resize `src` (`in_h × in_w × 3`, row-major) into `dst` (`out_h × out_w × 3`).
    pub fn run(&mut self, src: &[u8], dst: &mut [u8]) {
        let (in_w, in_h) = self.in_size();
        let (out_w, out_h) = self.out_size();
        assert_eq!(src.len(), in_w * in_h * 3, "source size");
        assert_eq!(dst.len(), out_w * out_h * 3, "destination size");
        let need_horizontal = in_w != out_w;
        let need_vertical = in_h != out_h;
        match (need_horizontal, need_vertical) {
            (false, false) => dst.copy_from_slice(src),
            (true, false) => horizontal_pass(&self.horizontal, src, 0, in_h, dst),
            (false, true) => vertical_pass(&self.vertical, src, out_w, 0, dst),
            (true, true) => {
                // Like Pillow, resample horizontally only the rows the vertical pass reads.
                let (y0, y1) = self.vertical.source_span();
                let rows = y1 - y0;
                let tmp = &mut self.scratch[..out_w * rows * 3];
                horizontal_pass(&self.horizontal, src, y0, rows, tmp);
                vertical_pass(&self.vertical, tmp, out_w, y0, dst);
            }
        }
    }
}

fn horizontal_pass(
    c: &AxisCoefficients,
    src: &[u8],
    first_row: usize,
    rows: usize,
    dst: &mut [u8],
) {
    let in_w = c.in_size;
    let out_w = c.out_size;
    let round = 1i32 << (PRECISION_BITS - 1);
    for y in 0..rows {
        let row = &src[(first_row + y) * in_w * 3..(first_row + y + 1) * in_w * 3];
        let out_row = &mut dst[y * out_w * 3..(y + 1) * out_w * 3];
        for xx in 0..out_w {
            let k = &c.weights[xx * c.stride..xx * c.stride + c.len[xx]];
            let base = c.start[xx] * 3;
            let (mut s0, mut s1, mut s2) = (round, round, round);
            for (x, &w) in k.iter().enumerate() {
                let p = base + x * 3;
                s0 += i32::from(row[p]) * w;
                s1 += i32::from(row[p + 1]) * w;
                s2 += i32::from(row[p + 2]) * w;
            }
            out_row[xx * 3] = clip8(s0);
            out_row[xx * 3 + 1] = clip8(s1);
            out_row[xx * 3 + 2] = clip8(s2);
        }
    }
}

/// `row_offset`: index in the full source image of `src`'s first row.
fn vertical_pass(
    c: &AxisCoefficients,
    src: &[u8],
    width: usize,
    row_offset: usize,
    dst: &mut [u8],
) {
    let round = 1i32 << (PRECISION_BITS - 1);
    let stride = width * 3;
    for yy in 0..c.out_size {
        let k = &c.weights[yy * c.stride..yy * c.stride + c.len[yy]];
        let first = c.start[yy] - row_offset;
        let out_row = &mut dst[yy * stride..(yy + 1) * stride];
        for (i, out) in out_row.iter_mut().enumerate() {
            let mut s = round;
            for (y, &w) in k.iter().enumerate() {
                s += i32::from(src[(first + y) * stride + i]) * w;
            }
            *out = clip8(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downscale_widens_the_filter_with_the_scale() {
        // 1280 -> 224: scale 5.714, support 5.714, up to 2*ceil+1 = 13 taps.
        let c = AxisCoefficients::bilinear(1280, 224);
        assert_eq!(c.stride, 13);
        // Away from the borders (where taps are clipped) every output averages >= 11 pixels.
        assert!(c.len[2..222].iter().all(|&n| n >= 11), "{:?}", &c.len[..4]);
        assert!(c.len[0] < c.len[100], "border taps are clipped");
        for i in 0..224 {
            let sum: i64 = c.weights[i * c.stride..i * c.stride + c.len[i]]
                .iter()
                .map(|&w| i64::from(w))
                .sum();
            assert!(
                (sum - (1 << 22)).abs() <= c.len[i] as i64,
                "weights sum to one at {i}"
            );
        }
    }

    #[test]
    fn same_size_is_identity() {
        let src: Vec<u8> = (0..5 * 4 * 3).map(|i| (i * 7 % 256) as u8).collect();
        let mut out = vec![0; src.len()];
        PillowBilinear::new(5, 4, 5, 4).run(&src, &mut out);
        assert_eq!(out, src);
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 64 * 48 * 3];
        let mut out = vec![0; 10 * 7 * 3];
        PillowBilinear::new(64, 48, 10, 7).run(&src, &mut out);
        assert!(out.iter().all(|&v| v == 77));
    }
}
