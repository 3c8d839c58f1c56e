//! Deterministic generators of test inputs.

/// Marsaglia's xorshift32 (`x ^= x << 13; x ^= x >> 17; x ^= x << 5`), with
/// the conversions the tests draw their values through. The state is public so
/// that a test can seed it literally (`XorShift32(7)`); 0 is a fixed point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorShift32(pub u32);

impl XorShift32 {
    /// Advances the state and returns it.
    pub fn next_u32(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }

    /// Uniform in `[-1, 1)`: the top 24 bits as `bits / 2^23 − 1`, a multiple of
    /// 2^-23, so every value and every product with a power of two is exact.
    pub fn signed_unit(&mut self) -> f32 {
        signed_unit_of(self.next_u32())
    }

    /// In `[-0.5, 0.5]`: `x / u32::MAX − 0.5` in f32 (rounded, so not uniform in
    /// the last bits).
    pub fn centered_unit(&mut self) -> f32 {
        self.next_u32() as f32 / u32::MAX as f32 - 0.5
    }

    /// Fills `xs` with [`XorShift32::signed_unit`] values.
    pub fn fill_f32(&mut self, xs: &mut [f32]) {
        for x in xs {
            *x = self.signed_unit();
        }
    }

    /// Fills `xs` with Q15 values over the whole range (the top 16 bits).
    pub fn fill_q15(&mut self, xs: &mut [i16]) {
        for x in xs {
            *x = (self.next_u32() >> 16) as u16 as i16;
        }
    }
}

/// [`XorShift32::signed_unit`] of one output.
fn signed_unit_of(x: u32) -> f32 {
    (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
}

/// Marsaglia's xorshift64 (`x ^= x << 13; x ^= x >> 7; x ^= x << 17`). The
/// state is public so that a test can seed it literally; 0 is a fixed point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XorShift64(pub u64);

impl XorShift64 {
    /// Advances the state and returns it.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// In `[0, n)`: the next value modulo `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform in `[lo, hi)`: the top 53 bits as a fraction of 2^53, scaled.
    pub fn f64_in(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// Knuth's MMIX linear congruential generator
/// (`s = s · 6364136223846793005 + 1442695040888963407`, wrapping), read
/// through its top 53 bits (its low bits have short periods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lcg64(pub u64);

impl Lcg64 {
    /// Advances the state and returns its top 53 bits.
    pub fn next_u53(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 11
    }

    /// In `[0, n)`: [`Lcg64::next_u53`] modulo `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u53() % n
    }

    /// Uniform in `[0, 1)`: [`Lcg64::next_u53`] as a fraction of 2^53 (exact).
    pub fn unit_f64(&mut self) -> f64 {
        self.next_u53() as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_the_published_recurrences() {
        // xorshift32 from 1: 1 ^ 1 << 13 = 8193, >> 17 changes nothing,
        // 8193 ^ 8193 << 5 = 270369.
        let mut r = XorShift32(1);
        assert_eq!(r.next_u32(), 270_369);
        assert_eq!(r.0, 270_369);
        // xorshift64 from 1: 8193, then 8193 ^ 8193 >> 7 = 8257, then
        // 8257 ^ 8257 << 17 = 1082269761.
        let mut r = XorShift64(1);
        assert_eq!(r.next_u64(), 1_082_269_761);
        // MMIX from 0: the increment, then its top 53 bits.
        let mut r = Lcg64(0);
        assert_eq!(r.next_u53(), 1_442_695_040_888_963_407 >> 11);
        assert_eq!(r.0, 1_442_695_040_888_963_407);
    }

    #[test]
    fn signed_unit_is_the_integer_form_bit_for_bit() {
        // The same value as `((x >> 8) - 2^23) / 2^23` in integers, for every
        // top 24 bits.
        for top in 0..1u32 << 24 {
            let int_form = (top as i32 - (1 << 23)) as f32 / (1 << 23) as f32;
            assert_eq!(
                signed_unit_of(top << 8).to_bits(),
                int_form.to_bits(),
                "{top}"
            );
        }
        let mut a = XorShift32(0x5eed);
        let mut b = a.clone();
        let mut xs = [0f32; 16];
        a.fill_f32(&mut xs);
        for x in xs {
            assert_eq!(x.to_bits(), b.signed_unit().to_bits());
            assert!((-1.0..1.0).contains(&x));
        }
    }

    #[test]
    fn ranges() {
        let mut r = XorShift32(7);
        for _ in 0..10_000 {
            assert!((-0.5..=0.5).contains(&r.centered_unit()));
        }
        let mut r = XorShift64(3);
        for _ in 0..10_000 {
            assert!(r.below(10) < 10);
            assert!((2.0..5.0).contains(&r.f64_in(2.0, 5.0)));
        }
        let mut r = Lcg64(9);
        for _ in 0..10_000 {
            assert!(r.below(7) < 7);
            assert!((0.0..1.0).contains(&r.unit_f64()));
        }
    }
}
