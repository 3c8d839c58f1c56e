//! Bounds on what a conversion computes itself, so that absurd dimensions in a
//! config or a checkpoint header are an error rather than an allocation failure.
//!
//! Weights are bounded by the files they come from (a tensor's shape is checked
//! against the config before its data is read); the tables a converter computes
//! (RoPE cos/sin, XGLM's sinusoidal table) are bounded here, and so is every
//! dimension a config or a checkpoint header gives, before anything is sized from
//! it.

/// Largest dimension (width, feed-forward width, heads, head dimension,
/// vocabulary, context) an image holds: [`microformer::image::Header::validate`]'s
/// bound, checked on the config before anything is computed from it.
pub const MAX_DIM: usize = 1 << 20;

/// Most layers an image holds ([`microformer::image::Header::validate`]'s bound).
pub const MAX_LAYERS: usize = 1024;

/// Checks a config dimension against [`MAX_DIM`] (or [`MAX_LAYERS`] for a layer
/// count): the error names the key and the bound.
pub fn check_dim(key: &str, value: usize, layers: bool) -> crate::error::Result<()> {
    let max = if layers { MAX_LAYERS } else { MAX_DIM };
    if value > max {
        crate::error::bail!("{key} {value} is too large (an image holds at most {max})");
    }
    Ok(())
}

/// Most entries of one table a converter computes: 2^26 (256 MiB of f32), as
/// `microformer tables` allows.
pub const MAX_TABLE_ENTRIES: usize = 1 << 26;

/// `rows · cols` when it is at most [`MAX_TABLE_ENTRIES`].
pub fn table_entries(rows: usize, cols: usize) -> Option<usize> {
    rows.checked_mul(cols).filter(|&n| n <= MAX_TABLE_ENTRIES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_are_bounded() {
        assert!(check_dim("hidden_size", MAX_DIM, false).is_ok());
        let e = check_dim("hidden_size", MAX_DIM + 1, false).unwrap_err();
        assert_eq!(
            e.message(),
            "hidden_size 1048577 is too large (an image holds at most 1048576)"
        );
        assert!(check_dim("num_layers", MAX_LAYERS + 1, true).is_err());
        assert!(check_dim("num_layers", MAX_LAYERS, true).is_ok());
    }

    #[test]
    fn tables_are_bounded() {
        assert_eq!(table_entries(2048, 64), Some(131_072));
        assert_eq!(table_entries(1 << 13, 1 << 13), Some(MAX_TABLE_ENTRIES));
        assert_eq!(table_entries(1 << 13, (1 << 13) + 1), None);
        assert_eq!(table_entries(usize::MAX, 2), None);
    }
}
