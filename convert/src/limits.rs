//! Bounds on what a conversion computes itself, so that absurd dimensions in a
//! config or a checkpoint header are an error rather than an allocation failure.
//!
//! Weights are bounded by the files they come from; the tables a converter
//! computes (RoPE cos/sin, XGLM's sinusoidal table) are bounded here.

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
    fn tables_are_bounded() {
        assert_eq!(table_entries(2048, 64), Some(131_072));
        assert_eq!(table_entries(1 << 13, 1 << 13), Some(MAX_TABLE_ENTRIES));
        assert_eq!(table_entries(1 << 13, (1 << 13) + 1), None);
        assert_eq!(table_entries(usize::MAX, 2), None);
    }
}
