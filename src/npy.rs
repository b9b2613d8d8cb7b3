//! Minimal NumPy `.npy` reader/writer (format versions 1–3, C order,
//! little-endian `u1`, `f4`, `i8`). Enough to exchange frames, tensors and
//! reference outputs with Python without a NumPy dependency on the robot.
//!
//! Format: <https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html>

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a .npy file ({reason})")]
    Format { path: String, reason: String },
    #[error("{path}: dtype {found} where {expected} was expected")]
    Dtype {
        path: String,
        found: String,
        expected: &'static str,
    },
}

/// Element types this module reads and writes.
pub trait NpyElement: Copy + Sized {
    /// The `descr` string NumPy writes for this type (little-endian).
    const DESCR: &'static str;
    fn from_le(bytes: &[u8]) -> Self;
    fn write_le(self, out: &mut Vec<u8>);
}

impl NpyElement for u8 {
    const DESCR: &'static str = "|u1";
    fn from_le(bytes: &[u8]) -> Self {
        bytes[0]
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.push(self)
    }
}

impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
    fn from_le(bytes: &[u8]) -> Self {
        f32::from_le_bytes(bytes.try_into().expect("4 bytes"))
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
    fn from_le(bytes: &[u8]) -> Self {
        i64::from_le_bytes(bytes.try_into().expect("8 bytes"))
    }
    fn write_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes())
    }
}

/// A dense C-order array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
    data_offset: usize,
}

fn format_err(path: &str, reason: impl Into<String>) -> NpyError {
    NpyError::Format {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Value of `'key': value` in the header dict, as raw text up to the next
/// top-level comma or closing brace.
fn dict_value<'a>(dict: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("'{key}':");
    let start = dict.find(&needle)? + needle.len();
    let rest = dict[start..].trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    None
}

fn parse_header(path: &str, bytes: &[u8]) -> Result<Header, NpyError> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(format_err(path, "missing \\x93NUMPY magic at byte 0"));
    }
    let major = bytes[6];
    let (header_len, header_start) = match major {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 => {
            if bytes.len() < 12 {
                return Err(format_err(path, "truncated header length at byte 8"));
            }
            (
                u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
                12,
            )
        }
        v => {
            return Err(format_err(
                path,
                format!("unsupported version {v} at byte 6"),
            ))
        }
    };
    let end = header_start + header_len;
    if bytes.len() < end {
        return Err(format_err(path, "header runs past end of file"));
    }
    let dict = std::str::from_utf8(&bytes[header_start..end])
        .map_err(|_| format_err(path, "header is not UTF-8"))?;
    let descr = dict_value(dict, "descr")
        .ok_or_else(|| format_err(path, "header has no 'descr'"))?
        .trim_matches('\'')
        .to_string();
    let fortran_order = match dict_value(dict, "fortran_order") {
        Some("False") => false,
        Some("True") => true,
        _ => return Err(format_err(path, "header has no valid 'fortran_order'")),
    };
    let shape_text = dict_value(dict, "shape")
        .ok_or_else(|| format_err(path, "header has no 'shape'"))?
        .trim_start_matches('(')
        .trim_end_matches(')');
    let shape = shape_text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<usize>()
                .map_err(|_| format_err(path, format!("bad shape entry {s:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Header {
        descr,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// Parse `.npy` bytes; `path` is only used in error messages.
pub fn parse<T: NpyElement>(path: &str, bytes: &[u8]) -> Result<NpyArray<T>, NpyError> {
    let header = parse_header(path, bytes)?;
    // NumPy writes '<u1' and '|u1' interchangeably for bytes; '=' means native (LE here).
    let normalise = |d: &str| d.replace('=', "<").replace("<u1", "|u1");
    if normalise(&header.descr) != T::DESCR {
        return Err(NpyError::Dtype {
            path: path.to_string(),
            found: header.descr,
            expected: T::DESCR,
        });
    }
    if header.fortran_order {
        return Err(format_err(path, "Fortran-order arrays are not supported"));
    }
    let count: usize = header.shape.iter().product();
    let size = std::mem::size_of::<T>();
    let payload = &bytes[header.data_offset..];
    if payload.len() != count * size {
        return Err(format_err(
            path,
            format!(
                "shape {:?} needs {} data bytes, file has {} after the header",
                header.shape,
                count * size,
                payload.len()
            ),
        ));
    }
    let data = payload.chunks_exact(size).map(T::from_le).collect();
    Ok(NpyArray {
        shape: header.shape,
        data,
    })
}

/// Read a `.npy` file of element type `T`.
pub fn read<T: NpyElement>(path: &Path) -> Result<NpyArray<T>, NpyError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| NpyError::Io {
        path: shown.clone(),
        source,
    })?;
    parse(&shown, &bytes)
}

/// Serialise an array as `.npy` version 1.0 bytes.
pub fn to_bytes<T: NpyElement>(shape: &[usize], data: &[T]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy::to_bytes: shape does not match data length"
    );
    let shape_text = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut dict = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
        T::DESCR,
        shape_text
    );
    // Header (magic + version + len + dict + '\n') is padded to a multiple of 64.
    let unpadded = 10 + dict.len() + 1;
    dict.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    dict.push('\n');
    let mut out = Vec::with_capacity(10 + dict.len() + std::mem::size_of_val(data));
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    for &v in data {
        v.write_le(&mut out);
    }
    out
}

/// Write an array to a `.npy` file.
pub fn write<T: NpyElement>(path: &Path, shape: &[usize], data: &[T]) -> Result<(), NpyError> {
    std::fs::write(path, to_bytes(shape, data)).map_err(|source| NpyError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_f32() {
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        let bytes = to_bytes(&[2, 3, 4], &data);
        assert_eq!((bytes.len() - data.len() * 4) % 64, 0);
        let back: NpyArray<f32> = parse("mem", &bytes).unwrap();
        assert_eq!(back.shape, vec![2, 3, 4]);
        assert_eq!(back.data, data);
    }

    #[test]
    fn numpy_written_header_is_parsed() {
        // Bytes of `np.save(f, np.arange(6, dtype=np.uint8).reshape(2, 3))` (NumPy 2.x).
        let mut bytes = b"\x93NUMPY\x01\x00v\x00".to_vec();
        let dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 3), }";
        let mut header = dict.to_string();
        header.push_str(&" ".repeat(118 - dict.len() - 1));
        header.push('\n');
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0, 1, 2, 3, 4, 5]);
        let a: NpyArray<u8> = parse("mem", &bytes).unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn wrong_dtype_names_both() {
        let bytes = to_bytes(&[2], &[1.0f32, 2.0]);
        let err = parse::<u8>("frame.npy", &bytes).unwrap_err().to_string();
        assert!(
            err.contains("frame.npy") && err.contains("<f4") && err.contains("|u1"),
            "{err}"
        );
    }

    #[test]
    fn truncated_payload_is_an_error() {
        let mut bytes = to_bytes(&[4], &[1.0f32, 2.0, 3.0, 4.0]);
        bytes.truncate(bytes.len() - 3);
        let err = parse::<f32>("t.npy", &bytes).unwrap_err().to_string();
        assert!(err.contains("needs 16 data bytes"), "{err}");
    }
}
