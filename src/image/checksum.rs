//! The image checksum: a Fletcher-style pair of 64-bit running sums over the
//! image's little-endian u32 words, stored in its last [`CHECKSUM_SIZE`] bytes.
//! The second sum (of the running first) makes the order of the words count too.

/// Bytes of the trailing checksum.
pub const CHECKSUM_SIZE: usize = 8;

/// Fletcher-style 64-bit checksum over little-endian u32 words (`data.len()` a
/// multiple of 4; a tail is zero-padded).
pub fn checksum(data: &[u8]) -> u64 {
    let mut s1: u64 = 0;
    let mut s2: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        s1 = s1.wrapping_add(u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64);
        s2 = s2.wrapping_add(s1);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut w = [0u8; 4];
        w[..rem.len()].copy_from_slice(rem);
        s1 = s1.wrapping_add(u32::from_le_bytes(w) as u64);
        s2 = s2.wrapping_add(s1);
    }
    s2 ^ s1.rotate_left(32)
}
