//! A heap byte buffer at a 4-byte aligned address.

use alloc::vec;
use alloc::vec::Vec;

/// Bytes at a 4-byte aligned address, as an image must be for
/// `Image::parse`: `len` bytes over whole `u32` words, the tail zero.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlignedBytes {
    words: Vec<u32>,
    len: usize,
}

impl AlignedBytes {
    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        AlignedBytes {
            words: vec![0; len.div_ceil(4)],
            len,
        }
    }

    /// An aligned copy of `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let mut b = Self::zeroed(bytes.len());
        b.bytes_mut().copy_from_slice(bytes);
        b
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    /// The bytes, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_exactly_as_long() {
        for len in [0, 1, 3, 4, 5, 4099] {
            let src: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let b = AlignedBytes::from_bytes(&src);
            assert_eq!(b.bytes(), &src[..]);
            assert_eq!(b.bytes().as_ptr() as usize % 4, 0);
            assert_eq!(AlignedBytes::zeroed(len).bytes(), &vec![0u8; len][..]);
        }
    }
}
