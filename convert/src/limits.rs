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

std::thread_local! {
    /// The bound [`table_entries`] applies on this thread ([`with_table_limit`]).
    static LIMIT: std::cell::Cell<usize> = const { std::cell::Cell::new(MAX_TABLE_ENTRIES) };
}

/// `rows · cols` when it is at most the table bound in force: [`MAX_TABLE_ENTRIES`],
/// or the smaller one [`with_table_limit`] sets around a conversion.
pub fn table_entries(rows: usize, cols: usize) -> Option<usize> {
    rows.checked_mul(cols)
        .filter(|&n| n <= current_table_limit())
}

/// The bound [`table_entries`] applies now.
pub fn current_table_limit() -> usize {
    LIMIT.with(|l| l.get())
}

/// Runs `f` with [`table_entries`] bounded by `limit` (at most
/// [`MAX_TABLE_ENTRIES`]) on this thread: the Hugging Face converter plans its
/// tables inside it with [`table_limit`] of its safetensors' size, so that what
/// a `config.json` asks for is bounded by the checkpoint it describes.
pub fn with_table_limit<T>(limit: usize, f: impl FnOnce() -> T) -> T {
    let old = LIMIT.with(|l| l.replace(limit.min(MAX_TABLE_ENTRIES)));
    let out = f();
    LIMIT.with(|l| l.set(old));
    out
}

/// Entries every conversion may compute in its tables whatever its input's
/// size: 2^16 (256 KiB of f32 per table).
pub const MIN_TABLE_LIMIT: usize = 1 << 16;

/// Most entries of each table a conversion whose input (checkpoint, or
/// all its safetensors files) is `input_bytes` long may compute: one f32 per 4
/// input bytes (no table is larger than the input), at least
/// [`MIN_TABLE_LIMIT`], at most [`MAX_TABLE_ENTRIES`].
///
/// A header or config names its context and its head dimension in a few bytes;
/// this keeps what is allocated from them bounded by the input's own size (a
/// real checkpoint's tables are a small part of its weights: stories260K's
/// RoPE tables are 4 096 entries beside 1 MB of weights).
pub fn table_limit(input_bytes: u64) -> usize {
    let quarter = usize::try_from(input_bytes / 4).unwrap_or(usize::MAX);
    quarter.clamp(MIN_TABLE_LIMIT, MAX_TABLE_ENTRIES)
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

    #[test]
    fn table_limit_follows_the_input() {
        assert_eq!(table_limit(0), MIN_TABLE_LIMIT);
        assert_eq!(
            table_limit(4 * MIN_TABLE_LIMIT as u64 + 4),
            MIN_TABLE_LIMIT + 1
        );
        assert_eq!(table_limit(60_000_000), 15_000_000);
        assert_eq!(table_limit(u64::MAX), MAX_TABLE_ENTRIES);
    }

    #[test]
    fn a_scoped_limit_bounds_table_entries_and_is_restored() {
        assert_eq!(table_entries(1 << 13, 1 << 13), Some(MAX_TABLE_ENTRIES));
        with_table_limit(MIN_TABLE_LIMIT, || {
            assert_eq!(table_entries(256, 256), Some(MIN_TABLE_LIMIT));
            assert_eq!(table_entries(257, 256), None);
        });
        assert_eq!(table_entries(257, 256), Some(257 * 256));
        assert_eq!(current_table_limit(), MAX_TABLE_ENTRIES);
    }
}
