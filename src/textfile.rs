//! Reading the small text files a person hands the controller (the run
//! config, a calibration, model.json, scenario files): regular files of bounded size only,
//! so a FIFO cannot block start-up and `/dev/zero` cannot fill the memory.

use std::io::Read;
use std::path::Path;

/// Largest text file read: the shipped files are a few KiB.
pub const MAX_TEXT_FILE_BYTES: u64 = 1 << 20;

/// The file's text; an `InvalidInput` error for anything but a regular file
/// of at most [`MAX_TEXT_FILE_BYTES`].
pub fn read(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    if meta.len() > MAX_TEXT_FILE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} bytes, more than {MAX_TEXT_FILE_BYTES}", meta.len()),
        ));
    }
    let mut text = String::new();
    // take(): the file could grow between the check and the read.
    std::fs::File::open(path)?
        .take(MAX_TEXT_FILE_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_huge_files_are_refused() {
        assert_eq!(
            read(Path::new("/dev/zero")).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("robot.toml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(
            read(&fifo).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_TEXT_FILE_BYTES as usize + 1]).unwrap();
        let e = read(&big).unwrap_err();
        assert!(e.to_string().contains("more than"), "{e}");
        let ok = dir.path().join("ok.toml");
        std::fs::write(&ok, "a = 1\n").unwrap();
        assert_eq!(read(&ok).unwrap(), "a = 1\n");
    }
}
