//! Lower-case hex, for digests and random ids.

/// Lower-case hex of the SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex_lower(&sha2::Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`: bytes pushed into a buffer, checked once (not a `char` push
/// with its UTF-8 encoding per digit; three signatures per push run through here).
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let v: Vec<u8> = bytes
        .iter()
        .flat_map(|b| [HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]])
        .collect();
    String::from_utf8(v).expect("hex digits are ASCII")
}
