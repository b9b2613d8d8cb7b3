//! NumPy `.npy` files: frames, tensors and reference outputs exchanged with
//! Python, read and written by `ndarray-npy` (not on the real-time path).
//!
//! Reading views the file's own bytes ([`ViewNpyExt`]), so the header is
//! checked against the bytes that are really there: a header claiming more
//! data than the file holds is an error, never a huge allocation.

use std::path::Path;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ndarray_npy::{ViewElement, ViewNpyError, ViewNpyExt, WritableElement, WriteNpyError};

#[derive(Debug, thiserror::Error)]
pub enum NpyError {
    #[error("{path}: cannot read")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a C-order .npy array of {expected}")]
    Format {
        path: String,
        expected: &'static str,
        #[source]
        source: ViewNpyError,
    },
    #[error("{path}: cannot write")]
    Write {
        path: String,
        #[source]
        source: WriteNpyError,
    },
    #[error("{path}: not a plain .npy header ({reason})")]
    Header { path: String, reason: &'static str },
    #[error("{path}: shape {shape:?} does not hold {len} values")]
    Shape {
        path: String,
        shape: Vec<usize>,
        len: usize,
    },
}

/// Element types exchanged as `.npy` (little-endian, as NumPy writes them here).
pub trait NpyElement: ViewElement + WritableElement + Clone {
    /// The `descr` NumPy writes for this type, for error messages.
    const DESCR: &'static str;
}

impl NpyElement for u8 {
    const DESCR: &'static str = "|u1";
}
impl NpyElement for f32 {
    const DESCR: &'static str = "<f4";
}
impl NpyElement for i64 {
    const DESCR: &'static str = "<i8";
}

/// A dense C-order array read from a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray<T> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// Parse `.npy` bytes; `path` is only used in error messages. Multi-byte
/// elements need `bytes` aligned to them (a `Vec` from the allocator is);
/// [`read`] takes care of it.
pub fn parse<T: NpyElement>(path: &str, bytes: &[u8]) -> Result<NpyArray<T>, NpyError> {
    plain_header(bytes).map_err(|reason| NpyError::Header {
        path: path.to_string(),
        reason,
    })?;
    let view = ArrayViewD::<T>::view_npy(bytes).map_err(|source| NpyError::Format {
        path: path.to_string(),
        expected: T::DESCR,
        source,
    })?;
    if !view.is_standard_layout() {
        // A Fortran-order file views as a transposed array: refuse it rather
        // than hand out its elements in an order the caller does not expect.
        return Err(NpyError::Format {
            path: path.to_string(),
            expected: T::DESCR,
            source: ViewNpyError::WrongNdim(None, view.ndim()),
        });
    }
    Ok(NpyArray {
        shape: view.shape().to_vec(),
        data: view.iter().cloned().collect(),
    })
}

/// Largest header accepted: NumPy writes ~128 bytes for a plain array.
const MAX_HEADER_BYTES: usize = 4096;
/// Brackets in the header dict: a plain array's has `{`, `}`, `(`, `)`.
const MAX_HEADER_BRACKETS: usize = 8;

/// The header is a plain array's dict, checked before `ndarray-npy` parses
/// it: its Python-literal grammar (`py_literal`, pest) backtracks
/// exponentially on nested brackets. AFL found it: 40 `{` in a header made
/// one parse take over a minute.
fn plain_header(bytes: &[u8]) -> Result<(), &'static str> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        // ndarray-npy reports these precisely.
        return Ok(());
    }
    let (len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        _ if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        _ => return Ok(()),
    };
    if len > MAX_HEADER_BYTES {
        return Err("header longer than 4096 bytes");
    }
    let header = &bytes[start..(start + len).min(bytes.len())];
    let brackets = header.iter().filter(|b| b"{}()[]".contains(b)).count();
    if brackets > MAX_HEADER_BRACKETS {
        return Err("more brackets than a plain array's header has");
    }
    Ok(())
}

/// Read a `.npy` file of element type `T`.
pub fn read<T: NpyElement>(path: &Path) -> Result<NpyArray<T>, NpyError> {
    let shown = path.display().to_string();
    let io = |source| NpyError::Io {
        path: shown.clone(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    // Into 8-byte aligned memory, so that the data of any element type views
    // in place (the header length is a multiple of 16).
    let mut words = vec![0u64; usize::try_from(len.div_ceil(8)).unwrap_or(usize::MAX)];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let n = read_up_to(&mut file, bytes).map_err(io)?;
    parse(&shown, &bytes[..n])
}

/// Fill `buf` from `r` until it is full or `r` ends; the bytes read.
fn read_up_to(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Write an array of `shape` (C order) to a `.npy` file.
pub fn write<T: NpyElement>(path: &Path, shape: &[usize], data: &[T]) -> Result<(), NpyError> {
    let shown = || path.display().to_string();
    let array =
        ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).map_err(|_| NpyError::Shape {
            path: shown(),
            shape: shape.to_vec(),
            len: data.len(),
        })?;
    ndarray_npy::write_npy(path, &array).map_err(|source| NpyError::Write {
        path: shown(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1.0 file's magic and header holding `dict`, padded to 128 bytes.
    fn v1_header(dict: &str) -> Vec<u8> {
        let mut header = dict.to_string();
        header.push_str(&" ".repeat(128 - 10 - dict.len() - 1));
        header.push('\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
        bytes.extend_from_slice(header.as_bytes());
        bytes
    }

    fn report(e: &NpyError) -> String {
        crate::error::report(e)
    }

    #[test]
    fn round_trip_f32() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let data: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
        write(&path, &[2, 3, 4], &data).unwrap();
        let back: NpyArray<f32> = read(&path).unwrap();
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
    fn wrong_dtype_names_the_file_and_both_types() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("frame.npy");
        write(&path, &[2], &[1.0f32, 2.0]).unwrap();
        let err = report(&read::<u8>(&path).unwrap_err());
        assert!(
            err.contains("frame.npy") && err.contains("<f4") && err.contains("|u1"),
            "{err}"
        );
    }

    #[test]
    fn truncated_payload_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.npy");
        write(&path, &[4], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = report(&read::<f32>(&path).unwrap_err());
        assert!(
            err.contains("t.npy") && err.contains("missing 3 bytes"),
            "{err}"
        );
    }

    #[test]
    fn a_header_claiming_huge_data_is_an_error_not_an_allocation() {
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 1000000), }";
        let mut bytes = v1_header(dict);
        bytes.extend_from_slice(&[0; 16]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.npy");
        std::fs::write(&path, &bytes).unwrap();
        let err = report(&read::<f32>(&path).unwrap_err());
        assert!(err.contains("huge.npy"), "{err}");
    }

    /// Regression (found by AFL): nested brackets in the header made the
    /// header parser backtrack for over a minute.
    #[test]
    fn a_header_of_nested_brackets_is_refused_at_once() {
        let dict = format!("{{'descr': '<f4', 'fortran_order': {}", "{".repeat(40));
        let bytes = v1_header(&dict);
        let t = std::time::Instant::now();
        let err = parse::<f32>("nested.npy", &bytes).unwrap_err();
        assert!(matches!(err, NpyError::Header { .. }), "{err}");
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn fortran_order_is_refused() {
        let dict = "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 3), }";
        let mut bytes = v1_header(dict);
        bytes.extend_from_slice(&[0, 1, 2, 3, 4, 5]);
        assert!(parse::<u8>("f.npy", &bytes).is_err());
    }

    #[test]
    fn a_shape_that_does_not_match_the_data_is_refused_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let err = write(&dir.path().join("w.npy"), &[2, 2], &[1u8; 3]).unwrap_err();
        assert!(matches!(err, NpyError::Shape { len: 3, .. }), "{err}");
    }
}
