//! How a conversion stores the weight matrices: the choice `microformer convert
//! --quant` makes, for either importer.

/// How the image stores the weight matrices (norms, biases and tables stay f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// 32-bit floats (a llama2.c v2 checkpoint is dequantized exactly as `runq.c`
    /// dequantizes).
    F32,
    /// IEEE binary16 (11 significant bits), rounded to nearest even.
    F16,
    /// int8 with one f32 scale per group of a row (llama2.c `runq.c`'s Q8_0).
    Q8 {
        /// Values per scale, a multiple of 4 up to 4096. `None`: a llama2.c v2
        /// checkpoint's own, else `export.py`'s default (64, halved until it
        /// divides the model width).
        group_size: Option<usize>,
    },
}

/// `export.py`'s default Q8 group size for a model of width `dim`: 64, halved
/// while it does not divide `dim`.
pub const fn default_group_size(dim: usize) -> usize {
    let mut g = 64;
    while g > 1 && dim % g != 0 {
        g /= 2;
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_group_follows_export_py() {
        assert_eq!(default_group_size(64), 64);
        assert_eq!(default_group_size(288), 32);
        assert_eq!(default_group_size(6), 2);
    }
}
