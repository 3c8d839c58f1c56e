//! Bytes at a 4-byte aligned address: llama2.c checkpoints and model images are
//! read in place as `f32`/`u32` and need it.

/// A 4-byte aligned copy of some bytes.
#[derive(Debug, Clone)]
pub struct AlignedBytes {
    buf: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` to a 4-byte aligned address.
    pub fn new(bytes: &[u8]) -> Self {
        let mut buf = vec![0u8; bytes.len() + 3];
        // A Vec's address never changes while it is not resized.
        let start = buf.as_ptr().align_offset(4).min(3);
        buf[start..start + bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            buf,
            start,
            len: bytes.len(),
        }
    }

    /// The bytes, 4-byte aligned.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_aligned() {
        for n in 0..9 {
            let src: Vec<u8> = (0..n as u8).collect();
            let a = AlignedBytes::new(&src[..]);
            assert_eq!(a.bytes(), &src[..]);
            assert_eq!(a.bytes().as_ptr().align_offset(4), 0);
        }
    }
}
