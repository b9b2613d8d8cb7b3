//! Lower-case hex text of bytes (digests in file names, cache keys and
//! records). One home, so every digest prints alike.

/// `[0x0a, 0xff]` → `"0aff"`.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_case_two_digits_per_byte() {
        assert_eq!(super::encode(&[0x00, 0x0a, 0xff, 0x3c]), "000aff3c");
        assert_eq!(super::encode(&[]), "");
    }
}
