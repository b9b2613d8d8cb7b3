//! Camera pixel formats → packed BGR u8 (the order the robot's camera
//! pipeline delivered, UPSTREAM §1).
//!
//! YUYV uses OpenCV's `cvtColor(COLOR_YUV2BGR_YUYV)` arithmetic (BT.601,
//! limited range, 20-bit fixed point; `modules/imgproc/src/color_yuv.simd.hpp`),
//! which is what an OpenCV-based capture produced. MJPEG is decoded by
//! `zune-jpeg`.

/// OpenCV's BT.601 fixed-point coefficients (`ITUR_BT_601_*`), 20-bit shift.
const SHIFT: i32 = 20;
const CY: i32 = 1_220_542;
const CUB: i32 = 2_116_026;
const CUG: i32 = -409_993;
const CVG: i32 = -852_492;
const CVR: i32 = 1_673_527;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConvertError {
    #[error("YUYV frame {width}x{height} needs {expected} bytes, got {actual}")]
    YuyvSize {
        width: usize,
        height: usize,
        expected: usize,
        actual: usize,
    },
    #[error("{format} frame needs {expected} bytes, the driver delivered {actual}")]
    RawSize {
        format: String,
        expected: usize,
        actual: usize,
    },
    #[error("YUYV width {0} is odd (pixels come in pairs)")]
    OddWidth(usize),
    #[error("NV12 frame {width}x{height} needs {expected} bytes (Y plane + interleaved UV plane), got {actual}")]
    Nv12Size {
        width: usize,
        height: usize,
        expected: usize,
        actual: usize,
    },
    #[error("NV12 size {width}x{height} is odd (chroma is subsampled 2x2)")]
    Nv12Odd { width: usize, height: usize },
    /// The decoder's text, not its `DecodeErrors`: this enum is `PartialEq`
    /// (tests compare errors) and `DecodeErrors` is not.
    #[error("MJPEG frame does not decode: {0}")]
    Jpeg(String),
    #[error("MJPEG frame is {got_w}x{got_h}, the stream was negotiated at {width}x{height}")]
    JpegSize {
        width: usize,
        height: usize,
        got_w: usize,
        got_h: usize,
    },
}

#[inline]
fn sat(v: i32) -> u8 {
    (v >> SHIFT).clamp(0, 255) as u8
}

/// YUYV 4:2:2 (Y0 U Y1 V) → packed BGR, `dst` = `width·height·3` bytes.
pub fn yuyv_to_bgr(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    if !width.is_multiple_of(2) {
        return Err(ConvertError::OddWidth(width));
    }
    let expected = width * height * 2;
    if src.len() < expected {
        return Err(ConvertError::YuyvSize {
            width,
            height,
            expected,
            actual: src.len(),
        });
    }
    assert_eq!(dst.len(), width * height * 3, "destination size");
    let round = 1 << (SHIFT - 1);
    for (pair, out) in src[..expected].chunks_exact(4).zip(dst.chunks_exact_mut(6)) {
        let u = i32::from(pair[1]) - 128;
        let v = i32::from(pair[3]) - 128;
        let ruv = round + CVR * v;
        let guv = round + CVG * v + CUG * u;
        let buv = round + CUB * u;
        for (k, &y) in [pair[0], pair[2]].iter().enumerate() {
            let yy = (i32::from(y) - 16).max(0) * CY;
            out[k * 3] = sat(yy + buv);
            out[k * 3 + 1] = sat(yy + guv);
            out[k * 3 + 2] = sat(yy + ruv);
        }
    }
    Ok(())
}

/// NV12 (Y plane, then interleaved U V at half resolution in both
/// directions) → packed BGR, OpenCV's `cvtColor(COLOR_YUV2BGR_NV12)`
/// arithmetic (the same BT.601 fixed point as YUYV). `dst` = `width·height·3`.
pub fn nv12_to_bgr(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut [u8],
) -> Result<(), ConvertError> {
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(ConvertError::Nv12Odd { width, height });
    }
    let expected = nv12_len(width, height);
    if src.len() < expected {
        return Err(ConvertError::Nv12Size {
            width,
            height,
            expected,
            actual: src.len(),
        });
    }
    assert_eq!(dst.len(), width * height * 3, "destination size");
    let (luma, chroma) = src[..expected].split_at(width * height);
    let round = 1 << (SHIFT - 1);
    for y in 0..height {
        let uv_row = &chroma[(y / 2) * width..(y / 2 + 1) * width];
        let y_row = &luma[y * width..(y + 1) * width];
        let out_row = &mut dst[y * width * 3..(y + 1) * width * 3];
        for (x2, uv) in uv_row.chunks_exact(2).enumerate() {
            let u = i32::from(uv[0]) - 128;
            let v = i32::from(uv[1]) - 128;
            let ruv = round + CVR * v;
            let guv = round + CVG * v + CUG * u;
            let buv = round + CUB * u;
            for x in [2 * x2, 2 * x2 + 1] {
                let yy = (i32::from(y_row[x]) - 16).max(0) * CY;
                out_row[x * 3] = sat(yy + buv);
                out_row[x * 3 + 1] = sat(yy + guv);
                out_row[x * 3 + 2] = sat(yy + ruv);
            }
        }
    }
    Ok(())
}

/// Bytes in one NV12 frame.
pub fn nv12_len(width: usize, height: usize) -> usize {
    width * height + width * height / 2
}

/// Decode one MJPEG frame into packed BGR of the negotiated size, into
/// `dst` (the recycled frame buffer: once it has grown to a frame, decoding
/// allocates no output buffer).
pub fn mjpeg_to_bgr(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut Vec<u8>,
) -> Result<(), ConvertError> {
    use zune_jpeg::zune_core::colorspace::ColorSpace;
    use zune_jpeg::zune_core::options::DecoderOptions;
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::BGR);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(src, options);
    let jpeg = |e: zune_jpeg::errors::DecodeErrors| ConvertError::Jpeg(format!("{e:?}"));
    decoder.decode_headers().map_err(jpeg)?;
    let (got_w, got_h) = decoder
        .dimensions()
        .ok_or_else(|| ConvertError::Jpeg("no dimensions after decode".into()))?;
    let len = width * height * 3;
    if (got_w, got_h) != (width, height) || decoder.output_buffer_size() != Some(len) {
        return Err(ConvertError::JpegSize {
            width,
            height,
            got_w,
            got_h,
        });
    }
    dst.resize(len, 0);
    decoder.decode_into(dst).map_err(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_and_saturated_yuyv() {
        // Y=16 black, Y=235 white at neutral chroma; limited-range expansion.
        let src = [16, 128, 235, 128];
        let mut dst = [0u8; 6];
        yuyv_to_bgr(&src, 2, 1, &mut dst).unwrap();
        assert_eq!(dst, [0, 0, 0, 255, 255, 255]);
        // Strong V (red) drives R up and B stays at luma level.
        let src = [128, 128, 128, 240];
        yuyv_to_bgr(&src, 2, 1, &mut dst).unwrap();
        assert!(dst[2] > 250 && dst[0] < 140, "{dst:?}");
    }

    #[test]
    fn short_or_odd_yuyv_is_an_error() {
        let mut dst = [0u8; 12];
        assert!(matches!(
            yuyv_to_bgr(&[0; 6], 2, 2, &mut dst),
            Err(ConvertError::YuyvSize { expected: 8, .. })
        ));
        let mut dst = [0u8; 9];
        assert_eq!(
            yuyv_to_bgr(&[0; 6], 3, 1, &mut dst),
            Err(ConvertError::OddWidth(3))
        );
    }

    #[test]
    fn garbage_mjpeg_is_an_error() {
        let mut out = Vec::new();
        assert!(matches!(
            mjpeg_to_bgr(b"\xff\xd8 not a jpeg", 4, 4, &mut out),
            Err(ConvertError::Jpeg(_)) | Err(ConvertError::JpegSize { .. })
        ));
    }
}
