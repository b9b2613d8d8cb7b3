//! The launch plan of the two preprocessing kernels in `kernels/`: grid and
//! block of each launch, the Pillow coefficient tables they read, the size of
//! every buffer, and each kernel's argument list in parameter order.
//!
//! One pure function computes it for both executors of the same CUDA source:
//! the GPU ([`super::cuda`], feature `cuda`, arguments pushed into
//! `cuLaunchKernel`) and the host emulation ([`super::emulated`], every GPU
//! thread one call of the kernel function on the CPU). Neither has a second
//! copy of the launch logic, so a test of the emulation tests this plan too.

use super::resize::AxisCoefficients;
use super::{ChannelOrder, InputFormat, PreprocessSpec, Rotation};

/// Threads per block, x × y: a warp of 32 along each output row keeps the
/// taps' loads coalesced; 8 rows make 256 threads per block, a common size
/// that keeps several blocks resident per SM on Orin (sm_87) and Hopper.
pub const BLOCK: [u32; 3] = [32, 8, 1];

/// Output element type of the model input buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputPrecision {
    F32,
    /// IEEE half, bits in u16 (TensorRT FP16 engines).
    F16,
}

/// The device buffers the kernels read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    /// The camera frame as delivered (packed, YUYV or NV12 bytes).
    Source,
    /// u8 intermediate after the horizontal pass (`rows × out_w × 3`).
    Intermediate,
    HorizontalStart,
    HorizontalLen,
    HorizontalWeights,
    VerticalStart,
    VerticalLen,
    VerticalWeights,
    /// Planar CHW fp32 model input (one element when the precision is fp16).
    OutputF32,
    /// Planar CHW fp16 model input bits (one element when the precision is fp32).
    OutputF16,
}

/// One kernel parameter, in the order the `__global__` function declares it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelArg {
    /// A pointer to this buffer's device memory.
    Buffer(Buffer),
    I32(i32),
    F32(f32),
}

/// The coefficient-table buffers, in a fixed order (uploaded once per plan).
pub const TABLES: [Buffer; 6] = [
    Buffer::HorizontalStart,
    Buffer::HorizontalLen,
    Buffer::HorizontalWeights,
    Buffer::VerticalStart,
    Buffer::VerticalLen,
    Buffer::VerticalWeights,
];

impl Buffer {
    /// Position of a table buffer in [`TABLES`]; None for the other buffers.
    pub fn table_index(self) -> Option<usize> {
        TABLES.iter().position(|&t| t == self)
    }
}

/// Grid and block of one launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub grid: [u32; 3],
    pub block: [u32; 3],
}

impl Launch {
    fn covering(width: usize, height: usize) -> Self {
        Self {
            grid: [
                (width as u32).div_ceil(BLOCK[0]),
                (height as u32).div_ceil(BLOCK[1]),
                1,
            ],
            block: BLOCK,
        }
    }

    /// Total threads launched (the kernels bounds-check the excess).
    pub fn threads(&self) -> usize {
        let blocks: usize = self.grid.iter().map(|&g| g as usize).product();
        let per_block: usize = self.block.iter().map(|&b| b as usize).product();
        blocks * per_block
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LaunchPlanError {
    #[error("frame size {width}x{height} or model size {out_width}x{out_height} is empty")]
    Empty {
        width: usize,
        height: usize,
        out_width: usize,
        out_height: usize,
    },
    #[error(
        "{format:?} frames need an even width (and an even height for NV12), got {width}x{height}"
    )]
    OddSize {
        format: InputFormat,
        width: usize,
        height: usize,
    },
    #[error("frame {width}x{height} is too large for the kernels' 32-bit indices")]
    TooLarge { width: usize, height: usize },
}

/// Everything needed to run the preprocessing kernels for one frame geometry.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    pub spec: PreprocessSpec,
    pub format: InputFormat,
    pub in_width: usize,
    pub in_height: usize,
    /// Bytes from one source row to the next (NV12: of both planes).
    pub pitch: i32,
    /// First source row (in the rotated image) the vertical pass needs.
    pub first_row: i32,
    /// Rows of the intermediate image.
    pub rows: i32,
    pub horizontal_start: Vec<i32>,
    pub horizontal_len: Vec<i32>,
    pub horizontal_weights: Vec<i32>,
    pub horizontal_stride: i32,
    /// Relative to `first_row`.
    pub vertical_start: Vec<i32>,
    pub vertical_len: Vec<i32>,
    pub vertical_weights: Vec<i32>,
    pub vertical_stride: i32,
    pub horizontal: Launch,
    pub vertical: Launch,
}

/// Input format code of `kernels/pillow_resample.cuh` (`MVLA_FORMAT_*`).
fn format_code(format: InputFormat) -> i32 {
    match format {
        InputFormat::Packed3 => 0,
        InputFormat::Yuyv => 1,
        InputFormat::Nv12 => 2,
    }
}

fn to_i32(values: &[usize]) -> Vec<i32> {
    // In range: every value is below an image dimension, checked < i32::MAX / 4.
    values.iter().map(|&v| v as i32).collect()
}

impl LaunchPlan {
    /// Whether this plan is the one for `width × height` frames in `format`.
    /// The kernels' set-up (tables, buffers) depends on the frame geometry
    /// only through the plan, so a consumer rebuilds exactly when this is
    /// false (the frame size or layout changed).
    pub fn fits(&self, width: usize, height: usize, format: InputFormat) -> bool {
        (self.in_width, self.in_height, self.format) == (width, height, format)
    }

    /// The plan for `in_width × in_height` frames in `format`.
    pub fn new(
        spec: PreprocessSpec,
        in_width: usize,
        in_height: usize,
        format: InputFormat,
    ) -> Result<Self, LaunchPlanError> {
        if in_width == 0 || in_height == 0 || spec.out_width == 0 || spec.out_height == 0 {
            return Err(LaunchPlanError::Empty {
                width: in_width,
                height: in_height,
                out_width: spec.out_width,
                out_height: spec.out_height,
            });
        }
        // The kernels index with 32-bit ints except for the row offsets
        // (`(long)y * pitch`): every coordinate and pitch must fit with room.
        // 16384 is far beyond any camera and any model input here.
        const MAX_SIDE: usize = 16_384;
        if [in_width, in_height, spec.out_width, spec.out_height]
            .iter()
            .any(|&s| s > MAX_SIDE)
        {
            return Err(LaunchPlanError::TooLarge {
                width: in_width,
                height: in_height,
            });
        }
        if format != InputFormat::Packed3
            && (!in_width.is_multiple_of(2)
                || (format == InputFormat::Nv12 && !in_height.is_multiple_of(2)))
        {
            return Err(LaunchPlanError::OddSize {
                format,
                width: in_width,
                height: in_height,
            });
        }
        let h = AxisCoefficients::bilinear(in_width, spec.out_width);
        let v = AxisCoefficients::bilinear(in_height, spec.out_height);
        // Only the source rows the vertical taps reach go through the
        // horizontal pass (Pillow's ImagingResampleInner does the same).
        let last = spec.out_height - 1;
        let (y0, y1) = (v.start[0], v.start[last] + v.len[last]);
        let vertical_start: Vec<usize> = v.start.iter().map(|&s| s - y0).collect();
        let pitch = match format {
            InputFormat::Packed3 => in_width * 3,
            InputFormat::Yuyv => in_width * 2,
            InputFormat::Nv12 => in_width,
        };
        Ok(Self {
            spec,
            format,
            in_width,
            in_height,
            pitch: pitch as i32,
            first_row: y0 as i32,
            rows: (y1 - y0) as i32,
            horizontal_start: to_i32(&h.start),
            horizontal_len: to_i32(&h.len),
            horizontal_weights: h.weights,
            horizontal_stride: h.stride as i32,
            vertical_start: to_i32(&vertical_start),
            vertical_len: to_i32(&v.len),
            vertical_weights: v.weights,
            vertical_stride: v.stride as i32,
            horizontal: Launch::covering(spec.out_width, y1 - y0),
            vertical: Launch::covering(spec.out_width, spec.out_height),
        })
    }

    /// Elements of `buffer` (its exact device size, in its element type).
    pub fn buffer_len(&self, buffer: Buffer, precision: OutputPrecision) -> usize {
        let out = self.spec.output_len();
        match buffer {
            Buffer::Source => self.format.frame_len(self.in_width, self.in_height),
            Buffer::Intermediate => self.rows as usize * self.spec.out_width * 3,
            Buffer::HorizontalStart => self.horizontal_start.len(),
            Buffer::HorizontalLen => self.horizontal_len.len(),
            Buffer::HorizontalWeights => self.horizontal_weights.len(),
            Buffer::VerticalStart => self.vertical_start.len(),
            Buffer::VerticalLen => self.vertical_len.len(),
            Buffer::VerticalWeights => self.vertical_weights.len(),
            // The unused output keeps one element: kernels take both pointers.
            Buffer::OutputF32 => match precision {
                OutputPrecision::F32 => out,
                OutputPrecision::F16 => 1,
            },
            Buffer::OutputF16 => match precision {
                OutputPrecision::F16 => out,
                OutputPrecision::F32 => 1,
            },
        }
    }

    /// The coefficient table behind a table buffer (uploaded once).
    pub fn table(&self, buffer: Buffer) -> Option<&[i32]> {
        match buffer {
            Buffer::HorizontalStart => Some(&self.horizontal_start),
            Buffer::HorizontalLen => Some(&self.horizontal_len),
            Buffer::HorizontalWeights => Some(&self.horizontal_weights),
            Buffer::VerticalStart => Some(&self.vertical_start),
            Buffer::VerticalLen => Some(&self.vertical_len),
            Buffer::VerticalWeights => Some(&self.vertical_weights),
            _ => None,
        }
    }

    /// Channel order of the decoded pixels of a frame delivered in `order`
    /// (YUYV and NV12 always decode to BGR).
    pub fn decoded_order(&self, order: ChannelOrder) -> ChannelOrder {
        match self.format {
            InputFormat::Packed3 => order,
            InputFormat::Yuyv | InputFormat::Nv12 => ChannelOrder::Bgr,
        }
    }

    /// `mvla_resample_horizontal`'s parameters, in declaration order.
    pub fn horizontal_args(&self) -> [KernelArg; 14] {
        use KernelArg::{Buffer as B, I32};
        let rotate = i32::from(self.spec.rotation == Rotation::Rotate180);
        [
            B(Buffer::Source),
            I32(format_code(self.format)),
            I32(self.in_width as i32),
            I32(self.in_height as i32),
            I32(self.pitch),
            I32(rotate),
            B(Buffer::HorizontalStart),
            B(Buffer::HorizontalLen),
            B(Buffer::HorizontalWeights),
            I32(self.horizontal_stride),
            I32(self.spec.out_width as i32),
            I32(self.first_row),
            I32(self.rows),
            B(Buffer::Intermediate),
        ]
    }

    /// `mvla_resample_vertical_normalize`'s parameters, in declaration order,
    /// for a frame delivered in `order`.
    pub fn vertical_args(
        &self,
        order: ChannelOrder,
        precision: OutputPrecision,
    ) -> [KernelArg; 17] {
        use KernelArg::{Buffer as B, F32, I32};
        let swap = i32::from(self.decoded_order(order) != self.spec.model_order);
        let n = &self.spec.normalisation;
        [
            B(Buffer::Intermediate),
            I32(self.spec.out_width as i32),
            I32(self.spec.out_height as i32),
            B(Buffer::VerticalStart),
            B(Buffer::VerticalLen),
            B(Buffer::VerticalWeights),
            I32(self.vertical_stride),
            I32(swap),
            F32(n.mean[0]),
            F32(n.mean[1]),
            F32(n.mean[2]),
            F32(n.std[0]),
            F32(n.std[1]),
            F32(n.std[2]),
            I32(i32::from(precision == OutputPrecision::F16)),
            B(Buffer::OutputF32),
            B(Buffer::OutputF16),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preprocess::Normalisation;

    fn spec(w: usize, h: usize) -> PreprocessSpec {
        PreprocessSpec {
            out_width: w,
            out_height: h,
            model_order: ChannelOrder::Bgr,
            rotation: Rotation::None,
            normalisation: Normalisation {
                mean: [0.5; 3],
                std: [0.25; 3],
            },
        }
    }

    #[test]
    fn grids_cover_every_output_element_with_partial_blocks() {
        let p = LaunchPlan::new(spec(37, 13), 641, 479, InputFormat::Packed3).unwrap();
        assert_eq!(p.vertical.grid, [2, 2, 1]);
        assert!(p.vertical.threads() >= 37 * 13);
        assert_eq!(p.horizontal.grid[0], 2);
        assert!(p.horizontal.grid[1] as usize * 8 >= p.rows as usize);
    }

    #[test]
    fn odd_yuyv_and_nv12_sizes_are_refused() {
        assert!(matches!(
            LaunchPlan::new(spec(8, 8), 641, 480, InputFormat::Yuyv),
            Err(LaunchPlanError::OddSize { .. })
        ));
        assert!(matches!(
            LaunchPlan::new(spec(8, 8), 640, 479, InputFormat::Nv12),
            Err(LaunchPlanError::OddSize { .. })
        ));
        assert!(LaunchPlan::new(spec(8, 8), 640, 479, InputFormat::Yuyv).is_ok());
    }

    #[test]
    fn empty_and_huge_sizes_are_errors_not_panics() {
        assert!(LaunchPlan::new(spec(8, 8), 0, 480, InputFormat::Packed3).is_err());
        assert!(LaunchPlan::new(spec(0, 8), 640, 480, InputFormat::Packed3).is_err());
        assert!(matches!(
            LaunchPlan::new(spec(8, 8), 60_000, 60_000, InputFormat::Packed3),
            Err(LaunchPlanError::TooLarge { .. })
        ));
    }

    #[test]
    fn buffer_sizes_follow_the_format_and_precision() {
        let p = LaunchPlan::new(spec(224, 224), 1280, 720, InputFormat::Nv12).unwrap();
        assert_eq!(
            p.buffer_len(Buffer::Source, OutputPrecision::F32),
            1280 * 720 * 3 / 2
        );
        assert_eq!(
            p.buffer_len(Buffer::OutputF32, OutputPrecision::F32),
            3 * 224 * 224
        );
        assert_eq!(p.buffer_len(Buffer::OutputF16, OutputPrecision::F32), 1);
        assert_eq!(
            p.buffer_len(Buffer::OutputF16, OutputPrecision::F16),
            3 * 224 * 224
        );
        assert_eq!(
            p.buffer_len(Buffer::Intermediate, OutputPrecision::F32),
            p.rows as usize * 224 * 3
        );
    }
}
