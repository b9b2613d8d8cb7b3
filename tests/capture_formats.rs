//! Camera pixel formats against OpenCV (tests/fixtures/capture, from
//! engines/make_fixtures.py): YUYV → BGR and MJPEG decoding.

mod common;

use common::*;
use mvla::frame::convert::{mjpeg_to_bgr, nv12_to_bgr, yuyv_to_bgr, ConvertError};
use mvla::npy;

#[test]
fn yuyv_matches_opencv_cvtcolor_exactly() {
    let (w, h) = (320, 240);
    let src = yuyv_pattern(w, h);
    let mut ours = vec![0u8; w * h * 3];
    yuyv_to_bgr(&src, w, h, &mut ours).unwrap();
    let cv = npy::read::<u8>(&fixtures().join("capture/yuyv_320x240_opencv_bgr.npy")).unwrap();
    assert_eq!(cv.shape, vec![h, w, 3]);
    let differing = ours.iter().zip(&cv.data).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0, "{differing} bytes differ from OpenCV");
}

#[test]
fn nv12_matches_opencv_cvtcolor_exactly() {
    let (w, h) = (320, 240);
    let src = nv12_pattern(w, h);
    let mut ours = vec![0u8; w * h * 3];
    nv12_to_bgr(&src, w, h, &mut ours).unwrap();
    let cv = npy::read::<u8>(&fixtures().join("capture/nv12_320x240_opencv_bgr.npy")).unwrap();
    assert_eq!(cv.shape, vec![h, w, 3]);
    let diffs = ours.iter().zip(&cv.data).filter(|(a, b)| a != b).count();
    assert_eq!(diffs, 0, "{diffs} bytes differ from OpenCV");
    // Short and odd-sized frames are errors that say what was expected.
    assert_eq!(
        nv12_to_bgr(&src[..1000], w, h, &mut ours),
        Err(ConvertError::Nv12Size {
            width: w,
            height: h,
            expected: w * h * 3 / 2,
            actual: 1000
        })
    );
    let mut odd = vec![0u8; 5 * 4 * 3];
    assert!(matches!(
        nv12_to_bgr(&src, 5, 4, &mut odd),
        Err(ConvertError::Nv12Odd { .. })
    ));
}

#[test]
fn mjpeg_decodes_close_to_opencv() {
    let jpg = std::fs::read(fixtures().join("capture/scene_320x240.jpg")).unwrap();
    let mut ours = Vec::new();
    mjpeg_to_bgr(&jpg, 320, 240, &mut ours).unwrap();
    let cv = npy::read::<u8>(&fixtures().join("capture/scene_320x240_opencv_bgr.npy")).unwrap();
    assert_eq!(ours.len(), cv.data.len());
    let diffs: Vec<i16> = ours
        .iter()
        .zip(&cv.data)
        .map(|(a, b)| (i16::from(*a) - i16::from(*b)).abs())
        .collect();
    let max = *diffs.iter().max().unwrap();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    // Different IDCT / chroma upsampling implementations: small differences only.
    assert!(max <= 8 && mean < 1.0, "max {max}, mean {mean}");
}

#[test]
fn mjpeg_of_the_wrong_size_is_corrupt() {
    let jpg = std::fs::read(fixtures().join("capture/scene_320x240.jpg")).unwrap();
    let mut out = Vec::new();
    let err = mjpeg_to_bgr(&jpg, 640, 480, &mut out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("320x240") && err.contains("640x480"), "{err}");
}
