//! Incremental HDF5 episode writer in the training format (UPSTREAM §1,
//! `flat` layout), so field sessions become training data.
//!
//! Every row is written and the file flushed before `append` returns: a
//! crash or power cut loses at most the row being written, and a file cut
//! short is still readable up to its last flushed row.

use std::path::{Path, PathBuf};

use hdf5::types::{FixedAscii, VarLenUnicode};

use crate::frame::ChannelOrder;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct WriteError {
    pub path: String,
    pub what: String,
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Room for HDF5's metadata per row on top of the frame: a chunk index
/// node, the event string's heap object, attributes, with a wide margin.
const ROW_METADATA_SLACK: u64 = 1 << 20;

/// Attributes fixed when the episode starts.
#[derive(Debug, Clone)]
pub struct EpisodeHeader {
    pub episode_name: String,
    pub instruction: String,
    pub action_chunk_size: i64,
    pub time_period: Option<String>,
    pub scenario: String,
    /// ISO-8601 UTC.
    pub collection_datetime: String,
    pub collection_hour: i64,
    pub collection_minute: i64,
    pub model_id: String,
}

pub struct EpisodeWriter {
    path: PathBuf,
    file: hdf5::File,
    images: hdf5::Dataset,
    actions: hdf5::Dataset,
    events: hdf5::Dataset,
    width: usize,
    height: usize,
    rows: usize,
}

fn vlu(s: &str) -> VarLenUnicode {
    s.parse().expect("VarLenUnicode from &str cannot fail")
}

impl EpisodeWriter {
    pub fn create(
        path: &Path,
        width: usize,
        height: usize,
        order: ChannelOrder,
        header: &EpisodeHeader,
    ) -> Result<Self, WriteError> {
        let err = |what: &str, e: hdf5::Error| WriteError {
            path: path.display().to_string(),
            what: what.to_string(),
            source: Box::new(e),
        };
        let file = hdf5::File::create_excl(path).map_err(|e| err("create", e))?;
        let images = file
            .new_dataset::<u8>()
            .chunk((1, height, width, 3))
            .deflate(1)
            .shape((0.., height, width, 3))
            .create("images")
            .map_err(|e| err("dataset images", e))?;
        let actions = file
            .new_dataset::<f32>()
            .chunk((64, 3))
            .shape((0.., 3))
            .create("actions")
            .map_err(|e| err("dataset actions", e))?;
        let events = file
            .new_dataset::<VarLenUnicode>()
            .chunk(64)
            .shape(0..)
            .create("action_event_types")
            .map_err(|e| err("dataset action_event_types", e))?;
        let str_attr = |loc: &hdf5::Location, name: &str, value: &str| -> Result<(), WriteError> {
            loc.new_attr::<VarLenUnicode>()
                .create(name)
                .and_then(|a| a.write_scalar(&vlu(value)))
                .map_err(|e| err(&format!("attribute {name}"), e))
        };
        let int_attr = |name: &str, value: i64| -> Result<(), WriteError> {
            file.new_attr::<i64>()
                .create(name)
                .and_then(|a| a.write_scalar(&value))
                .map_err(|e| err(&format!("attribute {name}"), e))
        };
        // The order frames are stored in; readers honour it over the layout default.
        str_attr(&images, "channel_order", order.name())?;
        str_attr(&file, "channel_order", order.name())?;
        str_attr(&file, "episode_name", &header.episode_name)?;
        str_attr(&file, "obstacle_layout_type", "hori")?;
        str_attr(&file, "scenario", &header.scenario)?;
        str_attr(&file, "collection_datetime", &header.collection_datetime)?;
        str_attr(&file, "recorded_by", "mvla")?;
        str_attr(&file, "model_id", &header.model_id)?;
        if let Some(p) = &header.time_period {
            str_attr(&file, "time_period", p)?;
        }
        int_attr("action_chunk_size", header.action_chunk_size)?;
        int_attr("collection_hour", header.collection_hour)?;
        int_attr("collection_minute", header.collection_minute)?;
        int_attr("num_frames", 0)?;
        file.new_attr::<f64>()
            .create("total_duration")
            .and_then(|a| a.write_scalar(&0.0f64))
            .map_err(|e| err("attribute total_duration", e))?;
        match FixedAscii::<256>::from_ascii(header.instruction.as_bytes()) {
            Ok(fixed) => file
                .new_dataset::<FixedAscii<256>>()
                .shape(1)
                .create("language_instruction")
                .and_then(|d| d.write(&[fixed]))
                .map_err(|e| err("dataset language_instruction", e))?,
            // Non-ASCII instruction: a variable-length UTF-8 string instead of S256.
            Err(_) => file
                .new_dataset::<VarLenUnicode>()
                .shape(1)
                .create("language_instruction")
                .and_then(|d| d.write(&[vlu(&header.instruction)]))
                .map_err(|e| err("dataset language_instruction", e))?,
        }
        file.flush().map_err(|e| err("flush", e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
            images,
            actions,
            events,
            width,
            height,
            rows: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Append one step: the frame as captured, the action commanded
    /// (`[linear_x, linear_y, angular_z]`), its event type, and the time since
    /// the episode started. Flushed before returning.
    pub fn append(
        &mut self,
        frame: &[u8],
        action: [f32; 3],
        event: &str,
        elapsed_s: f64,
    ) -> Result<(), WriteError> {
        let err = |what: &str, e: hdf5::Error| WriteError {
            path: self.path.display().to_string(),
            what: what.to_string(),
            source: Box::new(e),
        };
        if frame.len() != self.width * self.height * 3 {
            return Err(WriteError {
                path: self.path.display().to_string(),
                what: "append".into(),
                source: format!(
                    "frame has {} bytes, the episode is {}x{}x3",
                    frame.len(),
                    self.width,
                    self.height
                )
                .into(),
            });
        }
        // Refuse a row that might not fit rather than let libhdf5 hit the
        // full disk: a file cut short in the middle of a write cannot be
        // opened again (its superblock records the larger end), and every
        // row already written would be lost with it.
        self.room_for_row()?;
        let n = self.rows;
        if let Err(e) = self.append_row(n, frame, action, event) {
            // Disk full or another write error: cut every dataset back to the
            // last complete row, so images, actions and event types stay in
            // step (best effort: the disk may refuse this too; readers check
            // the lengths).
            let _ = self.images.resize((n, self.height, self.width, 3));
            let _ = self.actions.resize((n, 3));
            let _ = self.events.resize(n);
            let _ = self.file.flush();
            return Err(e);
        }
        self.rows += 1;
        self.file
            .attr("num_frames")
            .and_then(|a| a.write_scalar(&(self.rows as i64)))
            .map_err(|e| err("attribute num_frames", e))?;
        self.file
            .attr("total_duration")
            .and_then(|a| a.write_scalar(&elapsed_s))
            .map_err(|e| err("attribute total_duration", e))?;
        self.file.flush().map_err(|e| err("flush", e))
    }

    /// Bytes that must be free before a row is written: the frame
    /// uncompressed (deflate never shrinks noise much) plus room for HDF5's
    /// metadata (chunk index, heap, attributes).
    pub fn bytes_needed_per_row(&self) -> u64 {
        (self.width * self.height * 3) as u64 + ROW_METADATA_SLACK
    }

    /// `Ok` when the file system (free blocks for this user) and the
    /// process's file-size limit (RLIMIT_FSIZE) both leave room for a row.
    fn room_for_row(&self) -> Result<(), WriteError> {
        let needed = self.bytes_needed_per_row();
        let refuse = |what: &str, left: u64| {
            WriteError {
            path: self.path.display().to_string(),
            what: "disk full".into(),
            source: format!(
                "{what}: {left} bytes left, a row needs up to {needed}; recording stopped with {} complete rows",
                self.rows
            )
            .into(),
        }
        };
        let size = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        // SAFETY: getrlimit with a valid out pointer.
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) } == 0
            && limit.rlim_cur != libc::RLIM_INFINITY
        {
            let left = limit.rlim_cur.saturating_sub(size);
            if left < needed {
                return Err(refuse("file size limit (RLIMIT_FSIZE)", left));
            }
        }
        let dir = self.path.parent().unwrap_or(std::path::Path::new("."));
        if let Ok(s) = nix::sys::statvfs::statvfs(dir) {
            // Blocks available to this (unprivileged) user, as doctor's disk check counts them.
            let free = s.blocks_available().saturating_mul(s.fragment_size());
            if free < needed {
                return Err(refuse("file system", free));
            }
        }
        Ok(())
    }

    /// Row `n` of all three datasets.
    fn append_row(
        &self,
        n: usize,
        frame: &[u8],
        action: [f32; 3],
        event: &str,
    ) -> Result<(), WriteError> {
        let err = |what: &str, e: hdf5::Error| WriteError {
            path: self.path.display().to_string(),
            what: what.to_string(),
            source: Box::new(e),
        };
        let image = ndarray::ArrayView4::from_shape((1, self.height, self.width, 3), frame)
            .expect("length checked above");
        self.images
            .resize((n + 1, self.height, self.width, 3))
            .and_then(|_| {
                self.images
                    .write_slice(image, ndarray::s![n..n + 1, .., .., ..])
            })
            .map_err(|e| err("images", e))?;
        let row = ndarray::arr2(&[action]);
        self.actions
            .resize((n + 1, 3))
            .and_then(|_| self.actions.write_slice(&row, ndarray::s![n..n + 1, ..]))
            .map_err(|e| err("actions", e))?;
        let ev = ndarray::arr1(&[vlu(event)]);
        self.events
            .resize(n + 1)
            .and_then(|_| self.events.write_slice(&ev, ndarray::s![n..n + 1]))
            .map_err(|e| err("action_event_types", e))?;
        // Flushed here: a full disk shows up as this row's error, not later.
        self.file.flush().map_err(|e| err("flush", e))
    }
}

/// `SystemTime` → (ISO-8601 UTC, `YYYYmmdd_HHMMSS`, hour, minute), without a date library.
pub fn utc_stamp(t: std::time::SystemTime) -> (String, String, i64, i64) {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (hh, mm, ss) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
        format!("{y:04}{m:02}{d:02}_{hh:02}{mm:02}{ss:02}"),
        hh,
        mm,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_735_732_800 + 3723);
        let (iso, name, h, m) = utc_stamp(t);
        assert_eq!(iso, "2025-01-01T13:02:03Z");
        assert_eq!(name, "20250101_130203");
        assert_eq!((h, m), (13, 2));
        let (iso, ..) =
            utc_stamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(951_782_400));
        assert_eq!(iso, "2000-02-29T00:00:00Z");
    }
}
