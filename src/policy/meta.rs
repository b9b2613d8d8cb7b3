//! `model.json`: what the exporter (`engines/export.py`) states about a model
//! and everything the runtime needs to feed it and read its output.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::preprocess::{ChannelOrder, Normalisation, PreprocessSpec, Rotation};

pub const MODEL_FORMAT: &str = "mvla-model/1";

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{path}: cannot read")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// serde_json's message carries the line and column.
    #[error("{path}: not a valid model.json")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: String,
        key: &'static str,
        message: String,
    },
    #[error("{file}: sha256 is {actual}, but model.json says {expected} (file changed or model.json is stale: re-export)")]
    HashMismatch {
        file: String,
        expected: String,
        actual: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    pub width: usize,
    pub height: usize,
    pub channel_order: String,
    pub camera_rotation_deg: u32,
    pub resize: String,
    pub scale: f64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub layout: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrompt {
    pub instruction: String,
    pub text: String,
    pub tokenizer: String,
    pub token_ids: Vec<i64>,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalData {
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackbone {
    pub file: String,
    pub sha256: String,
    pub external_data: Vec<ExternalData>,
    pub inputs: Vec<String>,
    pub output: String,
    pub feature_dim: usize,
    pub parameters: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHead {
    pub file: String,
    pub sha256: String,
    pub external_data: Vec<ExternalData>,
    pub input: String,
    pub output: String,
    pub lstm_hidden: usize,
    pub lstm_layers: usize,
}

/// Serde mirror of model.json. Unknown keys are errors: a newer exporter's
/// model must not be half-understood.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModelMeta {
    pub format: String,
    pub source: serde_json::Value,
    pub variant: String,
    pub variant_description: String,
    pub image: RawImage,
    pub prompt: RawPrompt,
    pub backbone: RawBackbone,
    pub head: RawHead,
    pub window: usize,
    pub chunk: usize,
    pub action_dim: usize,
    pub action_names: Vec<String>,
    pub step_ms: u64,
    pub action_scale: f32,
    pub action_clip: f32,
    pub zero_first_step_after_reset: bool,
    pub output_semantics: String,
    pub opset: i64,
    pub parity: serde_json::Value,
}

/// Validated model metadata with resolved paths.
#[derive(Debug, Clone)]
pub struct ModelMeta {
    pub dir: PathBuf,
    pub raw: RawModelMeta,
    pub backbone_path: PathBuf,
    pub head_path: PathBuf,
    /// Short identifier: first 12 hex digits of sha256(backbone sha ‖ head sha).
    pub model_id: String,
    /// History spacing when it differs from the step (None: one step, the
    /// model's semantics). Only the sensitivity diagnostics set it, to show
    /// what feeding camera-frame-spaced history costs; never from model.json.
    pub history_step_override: Option<std::time::Duration>,
}

impl ModelMeta {
    /// Read and validate `DIR/model.json` (does not hash the graphs; see [`ModelMeta::verify_files`]).
    pub fn load(dir: &Path) -> Result<Self, MetaError> {
        let path = dir.join("model.json");
        let shown = path.display().to_string();
        let text = crate::textfile::read(&path).map_err(|source| MetaError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::from_json(&text, dir)
    }

    /// Parse and validate the text of `DIR/model.json` (errors name that path).
    pub fn from_json(text: &str, dir: &Path) -> Result<Self, MetaError> {
        let shown = dir.join("model.json").display().to_string();
        let raw: RawModelMeta = serde_json::from_str(text).map_err(|source| MetaError::Parse {
            path: shown.clone(),
            source,
        })?;
        let invalid = |key: &'static str, message: String| MetaError::Invalid {
            path: shown.clone(),
            key,
            message,
        };
        if raw.format != MODEL_FORMAT {
            return Err(invalid(
                "format",
                format!("{:?}, this build reads {MODEL_FORMAT:?}", raw.format),
            ));
        }
        ChannelOrder::parse(&raw.image.channel_order).ok_or_else(|| {
            invalid(
                "image.channel_order",
                format!("{:?} is not bgr/rgb", raw.image.channel_order),
            )
        })?;
        Rotation::from_degrees(raw.image.camera_rotation_deg).ok_or_else(|| {
            invalid(
                "image.camera_rotation_deg",
                format!("{} (supported: 0, 180)", raw.image.camera_rotation_deg),
            )
        })?;
        if raw.image.resize != "pillow_bilinear" {
            return Err(invalid(
                "image.resize",
                format!("{:?} (supported: pillow_bilinear)", raw.image.resize),
            ));
        }
        if raw.image.layout != "NCHW" {
            return Err(invalid(
                "image.layout",
                format!("{:?} (supported: NCHW)", raw.image.layout),
            ));
        }
        if (raw.image.scale - 1.0 / 255.0).abs() > 1e-9 {
            return Err(invalid(
                "image.scale",
                format!("{} (supported: 1/255)", raw.image.scale),
            ));
        }
        if raw.image.std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            return Err(invalid(
                "image.std",
                format!("{:?} must be positive", raw.image.std),
            ));
        }
        // Each numeric key within its documented range (crate::bounds).
        for (key, v) in [
            ("image.width", raw.image.width),
            ("image.height", raw.image.height),
            ("window", raw.window),
            ("chunk", raw.chunk),
            ("backbone.feature_dim", raw.backbone.feature_dim),
            ("prompt.input_ids", raw.prompt.input_ids.len()),
        ] {
            crate::bounds::check_u64(&format!("model.json:{key}"), v as u64)
                .map_err(|m| invalid(key, m))?;
        }
        crate::bounds::check_u64("model.json:step_ms", raw.step_ms)
            .map_err(|m| invalid("step_ms", m))?;
        for (key, v) in [
            ("action_scale", raw.action_scale),
            ("action_clip", raw.action_clip),
        ] {
            crate::bounds::check(&format!("model.json:{key}"), f64::from(v))
                .map_err(|m| invalid(key, m))?;
        }
        if raw.action_dim != 2 {
            return Err(invalid(
                "action_dim",
                format!(
                    "{} (the runtime drives linear_x, linear_y: 2)",
                    raw.action_dim
                ),
            ));
        }
        if raw.prompt.input_ids.is_empty() {
            return Err(invalid("prompt.input_ids", "empty".into()));
        }
        let model_id = {
            let mut h = Sha256::new();
            h.update(raw.backbone.sha256.as_bytes());
            h.update(raw.head.sha256.as_bytes());
            crate::hex::encode(&h.finalize())[..12].to_string()
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            backbone_path: dir.join(&raw.backbone.file),
            head_path: dir.join(&raw.head.file),
            raw,
            model_id,
            history_step_override: None,
        })
    }

    /// Check every graph file (and external data file) against its recorded sha256.
    pub fn verify_files(&self) -> Result<(), MetaError> {
        let mut files: Vec<(&str, &str)> = vec![
            (&self.raw.backbone.file, &self.raw.backbone.sha256),
            (&self.raw.head.file, &self.raw.head.sha256),
        ];
        for e in self
            .raw
            .backbone
            .external_data
            .iter()
            .chain(&self.raw.head.external_data)
        {
            files.push((&e.file, &e.sha256));
        }
        for (file, expected) in files {
            let path = self.dir.join(file);
            let actual = sha256_file(&path).map_err(|source| MetaError::Io {
                path: path.display().to_string(),
                source,
            })?;
            if actual != expected {
                return Err(MetaError::HashMismatch {
                    file: path.display().to_string(),
                    expected: expected.to_string(),
                    actual,
                });
            }
        }
        Ok(())
    }

    pub fn feature_dim(&self) -> usize {
        self.raw.backbone.feature_dim
    }

    pub fn step(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.raw.step_ms)
    }

    /// Spacing of the history window's frames: one step unless a diagnostic
    /// overrides it.
    pub fn history_step(&self) -> std::time::Duration {
        self.history_step_override.unwrap_or_else(|| self.step())
    }

    /// Channel order of the model's input tensor.
    pub fn channel_order(&self) -> ChannelOrder {
        ChannelOrder::parse(&self.raw.image.channel_order).expect("validated in load")
    }

    /// Rotation the training capture pipeline applied to raw camera frames
    /// (the default for a live camera; recorded episodes are already rotated).
    pub fn camera_rotation(&self) -> Rotation {
        Rotation::from_degrees(self.raw.image.camera_rotation_deg).expect("validated in load")
    }

    /// Preprocessing for frames that arrive with `frame_rotation` still to apply.
    pub fn preprocess_spec(&self, frame_rotation: Rotation) -> PreprocessSpec {
        PreprocessSpec {
            out_width: self.raw.image.width,
            out_height: self.raw.image.height,
            model_order: self.channel_order(),
            rotation: frame_rotation,
            normalisation: Normalisation {
                mean: self.raw.image.mean,
                std: self.raw.image.std,
            },
        }
    }

    pub fn pixel_count(&self) -> usize {
        3 * self.raw.image.width * self.raw.image.height
    }
}

pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(crate::hex::encode(&hasher.finalize()))
}
