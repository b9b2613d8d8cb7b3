//! Reader for HDF5 teleop episodes in the training format (UPSTREAM §1).
//!
//! Two layouts are accepted:
//! - `flat` (original collector): `images` (N,H,W,3) u8 stored **BGR**,
//!   `actions` (N,3) f32, `action_event_types` (N,) strings,
//!   optional `language_instruction` (1,) S256;
//! - `observations` (later collector): `observations/images` stored **RGB**,
//!   the same `actions` and event types, plus extra root attributes.
//!
//! A `channel_order` (or `color_order`) attribute on the images dataset or the
//! file root overrides the layout's default channel order; mvla's own recorder
//! writes it. Frame size always comes from the file (older files are 480×640).

use std::path::{Path, PathBuf};

use hdf5::types::{FixedAscii, FixedUnicode, VarLenAscii, VarLenUnicode};

use crate::frame::ChannelOrder;

#[derive(Debug, thiserror::Error)]
pub enum EpisodeError {
    #[error("{path}: cannot open as HDF5")]
    Open {
        path: String,
        #[source]
        source: hdf5::Error,
    },
    #[error("{path}: dataset `{key}`")]
    Hdf5 {
        path: String,
        key: String,
        #[source]
        source: hdf5::Error,
    },
    #[error("{path}: dataset `{key}`: {message}")]
    Dataset {
        path: String,
        key: String,
        message: String,
    },
    #[error("{path}: no image dataset (looked for `images` and `observations/images`)")]
    NoImages { path: String },
    #[error("{path}: `{images}` has {frames} frames but `actions` has {actions} rows")]
    LengthMismatch {
        path: String,
        images: String,
        frames: usize,
        actions: usize,
    },
    #[error("{path}: cannot read")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a regular file")]
    NotAFile { path: String },
    #[error("{path}: the HDF5 library crashed reading it (signal {signal}): the file is corrupt")]
    ReadCrashed { path: String, signal: i32 },
    #[error("{path}: the reader ended with status {status} (a panic) reading it")]
    ReadExited { path: String, status: i32 },
    #[error("{path}: reading it made no progress for {seconds} s (the HDF5 library hangs on it): the file is corrupt")]
    ReadHung { path: String, seconds: f64 },
    #[error("{path}: dataset `{key}` has {value} {what}, more than the {max} this reader accepts")]
    TooLarge {
        path: String,
        key: String,
        what: &'static str,
        value: usize,
        max: usize,
    },
    #[error("{path}: frame {index} is out of range (episode has {frames})")]
    FrameIndex {
        path: String,
        index: usize,
        frames: usize,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpisodeLayout {
    Flat,
    Observations,
}

impl EpisodeLayout {
    pub fn images_key(self) -> &'static str {
        match self {
            Self::Flat => "images",
            Self::Observations => "observations/images",
        }
    }

    /// Channel order the collector stored frames in, absent an attribute saying otherwise.
    pub fn default_order(self) -> ChannelOrder {
        match self {
            Self::Flat => ChannelOrder::Bgr,
            Self::Observations => ChannelOrder::Rgb,
        }
    }
}

/// Root attributes of an episode; all optional (files differ between collector versions).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EpisodeAttrs {
    pub episode_name: Option<String>,
    pub scenario: Option<String>,
    pub total_duration_s: Option<f64>,
    pub action_chunk_size: Option<i64>,
    pub time_period: Option<String>,
    pub collection_datetime: Option<String>,
}

pub struct Episode {
    pub path: PathBuf,
    pub layout: EpisodeLayout,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub channel_order: ChannelOrder,
    /// `[linear_x, linear_y, angular_z]` per frame.
    pub actions: Vec<[f32; 3]>,
    pub event_types: Vec<String>,
    pub instruction: Option<String>,
    pub attrs: EpisodeAttrs,
    images: hdf5::Dataset,
    _file: hdf5::File,
}

fn read_string_attr(loc: &hdf5::Location, name: &str) -> Option<String> {
    let attr = loc.attr(name).ok()?;
    if let Ok(s) = attr.read_scalar::<VarLenUnicode>() {
        return Some(s.as_str().to_string());
    }
    if let Ok(s) = attr.read_scalar::<VarLenAscii>() {
        return Some(s.as_str().to_string());
    }
    if let Ok(s) = attr.read_scalar::<FixedAscii<256>>() {
        return Some(s.as_str().to_string());
    }
    None
}

fn read_f64_attr(loc: &hdf5::Location, name: &str) -> Option<f64> {
    let attr = loc.attr(name).ok()?;
    attr.read_scalar::<f64>()
        .ok()
        .or_else(|| attr.read_scalar::<i64>().ok().map(|v| v as f64))
}

/// A 1-d dataset of strings, whichever HDF5 string type h5py chose.
fn read_strings(ds: &hdf5::Dataset) -> Result<Vec<String>, String> {
    if let Ok(v) = ds.read_1d::<VarLenUnicode>() {
        return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
    }
    if let Ok(v) = ds.read_1d::<VarLenAscii>() {
        return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
    }
    if let Ok(v) = ds.read_1d::<FixedAscii<256>>() {
        return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
    }
    if let Ok(v) = ds.read_1d::<FixedUnicode<256>>() {
        return Ok(v.iter().map(|s| s.as_str().to_string()).collect());
    }
    Err(format!(
        "not a 1-d string dataset (type {:?}, shape {:?})",
        ds.dtype().and_then(|t| t.to_descriptor()).ok(),
        ds.shape()
    ))
}

/// `language_instruction`: fixed-length bytes (`S256`) holding UTF-8, or any string type.
fn read_instruction(ds: &hdf5::Dataset) -> Result<String, String> {
    if let Ok(v) = ds.read_1d::<FixedAscii<256>>() {
        let first = v.first().ok_or("empty dataset")?;
        // HDF5 "ASCII" strings from h5py carry the UTF-8 bytes unchanged.
        return String::from_utf8(first.as_bytes().to_vec()).map_err(|e| format!("not UTF-8: {e}"));
    }
    read_strings(ds)?
        .into_iter()
        .next()
        .ok_or_else(|| "empty dataset".to_string())
}

/// Largest frame side accepted (8K video is 7680×4320): a corrupt or hostile
/// file claiming 60000×60000 is refused before a frame buffer is allocated.
pub const MAX_FRAME_SIDE: usize = 8192;
/// Most frames (and action rows) accepted: a 30 fps session of 90 hours. The
/// actions and event types are read whole; 10⁷ rows are 120 MB of actions.
pub const MAX_FRAMES: usize = 10_000_000;

impl Episode {
    /// Open an episode: read it completely in a throw-away child process
    /// first ([`super::probe`]: a file that crashes or hangs libhdf5 is an
    /// error, not the end of the controller), then in this process.
    pub fn open(path: &Path) -> Result<Self, EpisodeError> {
        super::probe::check_in_child(path)?;
        Self::open_in_process(path)
    }

    /// Open an episode with libhdf5 in this process, without the child check
    /// (the child itself uses this).
    pub fn open_in_process(path: &Path) -> Result<Self, EpisodeError> {
        let shown = path.display().to_string();
        let file = hdf5::File::open(path).map_err(|source| EpisodeError::Open {
            path: shown.clone(),
            source,
        })?;
        let h5_err = |key: &str, source: hdf5::Error| EpisodeError::Hdf5 {
            path: shown.clone(),
            key: key.to_string(),
            source,
        };
        let ds_err = |key: &str, message: String| EpisodeError::Dataset {
            path: shown.clone(),
            key: key.to_string(),
            message,
        };
        let layout = if file.link_exists("images") {
            EpisodeLayout::Flat
        } else if file.link_exists("observations") && file.link_exists("observations/images") {
            EpisodeLayout::Observations
        } else {
            return Err(EpisodeError::NoImages { path: shown });
        };
        let key = layout.images_key();
        let images = file.dataset(key).map_err(|e| h5_err(key, e))?;
        let shape = images.shape();
        if shape.len() != 4 || shape[3] != 3 {
            return Err(ds_err(
                key,
                format!("shape {shape:?}, expected (N, H, W, 3)"),
            ));
        }
        let dtype = images.dtype().map_err(|e| h5_err(key, e))?;
        if !dtype.is::<u8>() {
            return Err(ds_err(
                key,
                format!(
                    "element type {:?}, expected uint8",
                    dtype.to_descriptor().ok()
                ),
            ));
        }
        let (frames, height, width) = (shape[0], shape[1], shape[2]);
        if height == 0 || width == 0 {
            return Err(ds_err(key, format!("empty frames {height}x{width}")));
        }
        let too_large = |key: &str, what, value, max| EpisodeError::TooLarge {
            path: shown.clone(),
            key: key.to_string(),
            what,
            value,
            max,
        };
        if height > MAX_FRAME_SIDE || width > MAX_FRAME_SIDE {
            return Err(too_large(
                key,
                "pixels on a frame side",
                height.max(width),
                MAX_FRAME_SIDE,
            ));
        }
        if frames > MAX_FRAMES {
            return Err(too_large(key, "frames", frames, MAX_FRAMES));
        }

        let order_attr = read_string_attr(&images, "channel_order")
            .or_else(|| read_string_attr(&images, "color_order"))
            .or_else(|| read_string_attr(&file, "channel_order"))
            .or_else(|| read_string_attr(&file, "color_order"));
        let channel_order = match order_attr {
            None => layout.default_order(),
            Some(s) => ChannelOrder::parse(&s).ok_or_else(|| {
                ds_err(
                    key,
                    format!("attribute channel_order = {s:?}, expected bgr or rgb"),
                )
            })?,
        };

        let actions_ds = file.dataset("actions").map_err(|e| h5_err("actions", e))?;
        // The shape before the read: a corrupt row count is an error, not an
        // allocation of whatever it claims.
        let actions_shape = actions_ds.shape();
        if actions_shape.len() != 2 || !(2..=3).contains(&actions_shape[1]) {
            return Err(ds_err(
                "actions",
                format!("shape {actions_shape:?}, expected (N, 3)"),
            ));
        }
        if actions_shape[0] != frames {
            return Err(EpisodeError::LengthMismatch {
                path: shown,
                images: key.to_string(),
                frames,
                actions: actions_shape[0],
            });
        }
        let actions_arr = actions_ds
            .read_2d::<f32>()
            .map_err(|e| h5_err("actions (expected (N, 3) float32)", e))?;
        // Shape (frames, 2 or 3) checked above.
        let actions: Vec<[f32; 3]> = actions_arr
            .rows()
            .into_iter()
            .map(|r| [r[0], r[1], if r.len() > 2 { r[2] } else { 0.0 }])
            .collect();
        // String datasets are read whole: their row count first.
        let rows_ok = |key: &str, ds: &hdf5::Dataset| {
            if ds.size() > MAX_FRAMES {
                Err(too_large(key, "rows", ds.size(), MAX_FRAMES))
            } else {
                Ok(())
            }
        };
        let event_types = match file.dataset("action_event_types") {
            Ok(ds) => {
                rows_ok("action_event_types", &ds)?;
                read_strings(&ds).map_err(|m| ds_err("action_event_types", m))?
            }
            Err(_) => Vec::new(),
        };
        let instruction = match file.dataset("language_instruction") {
            Ok(ds) => Some({
                rows_ok("language_instruction", &ds)?;
                read_instruction(&ds).map_err(|m| ds_err("language_instruction", m))?
            }),
            Err(_) => None,
        };
        let attrs = EpisodeAttrs {
            episode_name: read_string_attr(&file, "episode_name"),
            scenario: read_string_attr(&file, "scenario"),
            total_duration_s: read_f64_attr(&file, "total_duration"),
            action_chunk_size: read_f64_attr(&file, "action_chunk_size").map(|v| v as i64),
            time_period: read_string_attr(&file, "time_period"),
            collection_datetime: read_string_attr(&file, "collection_datetime"),
        };
        Ok(Self {
            path: path.to_path_buf(),
            layout,
            frames,
            height,
            width,
            channel_order,
            actions,
            event_types,
            instruction,
            attrs,
            images,
            _file: file,
        })
    }

    /// Name for reports: the `episode_name` attribute, else the file stem.
    pub fn name(&self) -> String {
        self.attrs.episode_name.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
    }

    pub fn frame_len(&self) -> usize {
        self.height * self.width * 3
    }

    /// Read frame `index` (H×W×3, stored channel order) into `out`.
    pub fn read_frame(&self, index: usize, out: &mut Vec<u8>) -> Result<(), EpisodeError> {
        if index >= self.frames {
            return Err(EpisodeError::FrameIndex {
                path: self.path.display().to_string(),
                index,
                frames: self.frames,
            });
        }
        let frame = self
            .images
            .read_slice::<u8, _, ndarray::Ix3>(ndarray::s![index, .., .., ..])
            .map_err(|source| EpisodeError::Hdf5 {
                path: self.path.display().to_string(),
                key: format!("{}[{index}]", self.layout.images_key()),
                source,
            })?;
        out.clear();
        out.extend(frame.iter().copied());
        Ok(())
    }
}

/// Expand files and directories into the `.h5`/`.hdf5` files they hold, sorted.
pub fn collect_episode_paths(inputs: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(input)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(p.extension().and_then(|e| e.to_str()), Some("h5" | "hdf5"))
                })
                .collect();
            found.sort();
            out.extend(found);
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}
