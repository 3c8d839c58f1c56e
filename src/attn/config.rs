//! The attention block's head layout, score scaling and window.

use core::num::NonZeroUsize;

use crate::Error;

/// Head layout and score scaling of one attention block.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AttnConfig {
    n_heads: usize,
    /// Query heads per kv head (`n_heads / n_kv_heads`): non-zero, so that the
    /// head mapping divides without a panic path.
    group: NonZeroUsize,
    /// Non-zero, as the key/value width: chunk sizes and divisors the compiler
    /// sees non-zero (no panic path where the step chunks by them).
    head_dim: NonZeroUsize,
    kv_dim: NonZeroUsize,
    window: usize,
    divisor: f32,
    scale: f32,
}

impl AttnConfig {
    /// Heads and head dimension; scores divided by `sqrtf(head_dim)` (as `run.c`),
    /// no window.
    ///
    /// Errors: a zero count ([`Error::ZeroDimension`]); `n_kv_heads` not dividing
    /// `n_heads` ([`Error::InconsistentDimensions`]).
    pub fn new(n_heads: usize, n_kv_heads: usize, head_dim: usize) -> Result<Self, Error> {
        if n_heads == 0 || n_kv_heads == 0 || head_dim == 0 {
            return Err(Error::ZeroDimension);
        }
        if n_heads % n_kv_heads != 0 {
            return Err(Error::InconsistentDimensions);
        }
        let group = NonZeroUsize::new(n_heads / n_kv_heads).ok_or(Error::InconsistentDimensions)?;
        let hd = NonZeroUsize::new(head_dim).ok_or(Error::ZeroDimension)?;
        let kv_dim = n_kv_heads
            .checked_mul(head_dim)
            .and_then(NonZeroUsize::new)
            .ok_or(Error::InconsistentDimensions)?;
        Ok(AttnConfig {
            n_heads,
            group,
            head_dim: hd,
            kv_dim,
            window: 0,
            divisor: libm::sqrtf(head_dim as f32),
            scale: 1.0 / libm::sqrtf(head_dim as f32),
        })
    }

    /// Attend only to the last `window` positions (`0`: the whole context).
    pub const fn with_window(mut self, window: usize) -> Self {
        self.window = window;
        self
    }

    /// Divides scores by `divisor` instead of `√head_dim` (`1.0`: unscaled, as T5).
    ///
    /// Errors: a divisor that is not finite and positive ([`Error::InvalidParameter`]).
    pub fn with_divisor(mut self, divisor: f32) -> Result<Self, Error> {
        if !(divisor.is_finite() && divisor > 0.0) {
            return Err(Error::InvalidParameter);
        }
        self.divisor = divisor;
        self.scale = 1.0 / divisor;
        Ok(self)
    }

    /// Query heads.
    pub const fn n_heads(&self) -> usize {
        self.n_heads
    }

    /// Key/value heads.
    pub const fn n_kv_heads(&self) -> usize {
        self.n_heads / self.group.get()
    }

    /// Query heads per kv head (`n_heads / n_kv_heads`).
    pub const fn group(&self) -> usize {
        self.group.get()
    }

    /// Dimension of one head.
    pub const fn head_dim(&self) -> usize {
        self.head_dim.get()
    }

    /// Sliding window in positions (0: none).
    pub const fn window(&self) -> usize {
        self.window
    }

    /// The score divisor.
    pub const fn divisor(&self) -> f32 {
        self.divisor
    }

    /// The score scale `1/divisor` (f32), by which scores are multiplied.
    pub const fn scale(&self) -> f32 {
        self.scale
    }

    /// Query width `n_heads · head_dim`.
    pub const fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim.get()
    }

    /// Key/value width `n_kv_heads · head_dim`.
    pub const fn kv_dim(&self) -> usize {
        self.kv_dim.get()
    }

    /// The kv head that query head `head` reads.
    pub const fn kv_head(&self, head: usize) -> usize {
        head / self.group.get()
    }

    /// First key position a query at `pos` sees under a causal mask.
    pub const fn causal_start(&self, pos: usize) -> usize {
        if self.window == 0 {
            0
        } else {
            (pos + 1).saturating_sub(self.window)
        }
    }
}
