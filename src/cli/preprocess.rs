//! `mvla preprocess`: one frame through the runtime's CPU preprocessing, written as .npy.

use std::path::Path;

use anyhow::{bail, Result};

use super::BadInput;
use mvla::preprocess::{ChannelOrder, CpuPreprocessor, FrameRef, Preprocessor, Rotation};

pub fn run(
    model: &Path,
    input: &Path,
    out: &Path,
    frame_order: ChannelOrder,
    rotate_deg: u32,
) -> Result<u8> {
    let meta = mvla::policy::ModelMeta::load(model).map_err(BadInput::of)?;
    let rotation = Rotation::from_degrees(rotate_deg).ok_or_else(|| {
        BadInput::msg(format!(
            "--rotate-deg {rotate_deg}: supported values are 0 and 180"
        ))
    })?;
    let frame = mvla::npy::read::<u8>(input).map_err(BadInput::of)?;
    if frame.shape.len() != 3 || frame.shape[2] != 3 {
        bail!(BadInput::msg(format!(
            "{}: shape {:?}, expected [H, W, 3]",
            input.display(),
            frame.shape
        )));
    }
    let spec = meta.preprocess_spec(rotation);
    let mut pre = CpuPreprocessor::new(spec);
    let mut tensor = vec![0f32; spec.output_len()];
    pre.run(
        FrameRef {
            width: frame.shape[1],
            height: frame.shape[0],
            order: frame_order,
            data: &frame.data,
        },
        &mut tensor,
    )
    .map_err(|e| BadInput::context(e, input.display().to_string()))?;
    mvla::npy::write(out, &[1, 3, spec.out_height, spec.out_width], &tensor)?;
    eprintln!(
        "wrote {} [1, 3, {}, {}] ({} frame {}x{}, rotation {}°, model order {})",
        out.display(),
        spec.out_height,
        spec.out_width,
        frame_order,
        frame.shape[1],
        frame.shape[0],
        rotate_deg,
        spec.model_order
    );
    Ok(0)
}
