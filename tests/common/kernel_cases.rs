//! The preprocessing kernel cases shared by the host-emulation tests
//! (`tests/kernel_emulation.rs`, every CI run) and the GPU tests
//! (`tests/cuda_kernels.rs`, on a machine with an NVIDIA GPU): every input
//! layout, both rotations, the two camera sizes and edge geometries.
//!
//! The expected tensor always comes from the CPU twin (`CpuPreprocessor`,
//! Pillow-exact against committed Pillow references), after the OpenCV-exact
//! conversion for YUYV/NV12 (checked against committed `cv2.cvtColor` output):
//! never from the kernels' own arithmetic.
#![allow(dead_code)]

use super::{nv12_pattern, pattern_frame, tiny_model, yuyv_pattern};
use mvla::policy::ModelMeta;
use mvla::preprocess::{
    ChannelOrder, CpuPreprocessor, FrameRef, InputFormat, PreprocessSpec, Preprocessor, Rotation,
};

#[derive(Debug, Clone, Copy)]
pub struct KernelCase {
    pub name: &'static str,
    pub width: usize,
    pub height: usize,
    pub format: InputFormat,
    /// Channel order of a packed frame (YUYV/NV12 decode to BGR).
    pub order: ChannelOrder,
    pub rotation: Rotation,
    /// Model input size; `None` = the tiny model's (224×224).
    pub out: Option<(usize, usize)>,
}

impl KernelCase {
    pub fn label(&self) -> String {
        format!(
            "{} {}x{} {:?} {:?} {:?} -> {:?}",
            self.name, self.width, self.height, self.format, self.order, self.rotation, self.out
        )
    }

    pub fn spec(&self) -> PreprocessSpec {
        let meta = ModelMeta::load(&tiny_model()).expect("tiny model fixture");
        let mut spec = meta.preprocess_spec(self.rotation);
        if let Some((w, h)) = self.out {
            spec.out_width = w;
            spec.out_height = h;
        }
        spec
    }

    /// The raw bytes the camera would deliver for this case.
    pub fn frame(&self) -> Vec<u8> {
        match self.format {
            InputFormat::Packed3 => pattern_frame(self.width, self.height),
            InputFormat::Yuyv => yuyv_pattern(self.width, self.height),
            InputFormat::Nv12 => nv12_pattern(self.width, self.height),
        }
    }

    /// The CPU twin's tensor for this case.
    pub fn expected(&self) -> Vec<f32> {
        let raw = self.frame();
        let (w, h) = (self.width, self.height);
        let (packed, order) = match self.format {
            InputFormat::Packed3 => (raw, self.order),
            InputFormat::Yuyv => {
                let mut bgr = vec![0u8; w * h * 3];
                mvla::frame::convert::yuyv_to_bgr(&raw, w, h, &mut bgr).unwrap();
                (bgr, ChannelOrder::Bgr)
            }
            InputFormat::Nv12 => {
                let mut bgr = vec![0u8; w * h * 3];
                mvla::frame::convert::nv12_to_bgr(&raw, w, h, &mut bgr).unwrap();
                (bgr, ChannelOrder::Bgr)
            }
        };
        let spec = self.spec();
        let mut out = vec![0f32; spec.output_len()];
        CpuPreprocessor::new(spec)
            .run(
                FrameRef {
                    width: w,
                    height: h,
                    order,
                    data: &packed,
                },
                &mut out,
            )
            .unwrap();
        out
    }
}

/// Every layout × both rotations × {1280×720, 640×480}, plus edge geometries:
/// partial blocks on both axes, upscaling, a 1×1 model input, odd packed sizes.
pub fn all_cases() -> Vec<KernelCase> {
    let mut cases = Vec::new();
    let layouts = [
        (InputFormat::Packed3, ChannelOrder::Bgr),
        (InputFormat::Packed3, ChannelOrder::Rgb),
        (InputFormat::Yuyv, ChannelOrder::Bgr),
        (InputFormat::Nv12, ChannelOrder::Bgr),
    ];
    type Geometry = (&'static str, usize, usize, Option<(usize, usize)>);
    let geometries: [Geometry; 6] = [
        ("camera 720p", 1280, 720, None),
        ("camera VGA", 640, 480, None),
        ("partial blocks", 642, 480, Some((37, 13))),
        ("upscaling", 22, 14, Some((37, 29))),
        ("1x1 output", 640, 480, Some((1, 1))),
        ("tiny input", 2, 2, Some((3, 5))),
    ];
    for (name, width, height, out) in geometries {
        for (format, order) in layouts {
            for rotation in [Rotation::None, Rotation::Rotate180] {
                cases.push(KernelCase {
                    name,
                    width,
                    height,
                    format,
                    order,
                    rotation,
                    out,
                });
            }
        }
    }
    // Odd sizes exist only for packed frames (YUYV/NV12 need even sizes).
    for rotation in [Rotation::None, Rotation::Rotate180] {
        cases.push(KernelCase {
            name: "odd packed",
            width: 333,
            height: 117,
            format: InputFormat::Packed3,
            order: ChannelOrder::Rgb,
            rotation,
            out: Some((45, 31)),
        });
    }
    cases
}

/// First element whose bits differ, with both values.
pub fn first_bit_difference(got: &[f32], want: &[f32]) -> Option<(usize, f32, f32)> {
    assert_eq!(got.len(), want.len(), "length mismatch");
    got.iter()
        .zip(want)
        .position(|(g, w)| g.to_bits() != w.to_bits())
        .map(|i| (i, got[i], want[i]))
}

/// The IEEE binary16 bits nearest to each f32 (ties to even), computed by the
/// `half` crate: an independent reference for the kernels' fp16 output.
pub fn correctly_rounded_f16(values: &[f32]) -> Vec<u16> {
    values
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect()
}
