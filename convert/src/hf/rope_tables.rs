//! The RoPE tables of a Hugging Face model, computed as transformers computes them.
//!
//! Rows `[context][rotary_dim/2]`, computed the way Hugging Face's
//! `LlamaRotaryEmbedding.forward` computes them, so that the logits agree:
//! `inv_freq` from [`RopeConfig::inv_freq`] (Hugging Face's formula, evaluated in
//! f64) rounded to f32 — Hugging Face keeps `inv_freq` as a float32 buffer; the
//! angle `(pos as f32) · inv_freq` in f32 (its float32 matmul, one product per
//! entry); `cos`/`sin` of that f32 angle evaluated in f64 and rounded to f32 (torch's
//! float32 `cos`/`sin` are accurate to about an ulp); then multiplied in f32 by the
//! attention factor rounded to f32. Dynamic NTK and LongRoPE choose their
//! frequencies from the sequence length: here the image's context (`--context`).
//! GPT-J builds its table the same way in float32 (`create_sinusoidal_positions`).

use microformer::pos::rope_scaling::RopeConfig;

use crate::error::{bail, Result};

/// RoPE cos/sin rows for `context` positions, as Hugging Face computes them
/// (see the module documentation).
pub fn rope_tables(cfg: &RopeConfig<'_>, context: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    cfg.validate()?;
    let pairs = cfg.pairs();
    let inv: Vec<f32> = (0..pairs)
        .map(|i| cfg.inv_freq(i, context) as f32)
        .collect();
    let attn = cfg.attention_factor(context) as f32;
    if !(attn.is_finite() && inv.iter().all(|f| f.is_finite())) {
        bail!("the RoPE parameters give non-finite frequencies");
    }
    let mut cos = Vec::with_capacity(context * pairs);
    let mut sin = Vec::with_capacity(context * pairs);
    for p in 0..context {
        for &f in &inv {
            let angle = p as f32 * f;
            let a = f64::from(angle);
            cos.push(a.cos() as f32 * attn);
            sin.push(a.sin() as f32 * attn);
        }
    }
    Ok((cos, sin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use microformer::pos::rope_scaling::RopeScaling;

    #[test]
    fn rope_table_is_hf_float32_recipe() {
        let mut cfg = RopeConfig::new(10000.0, 8, 64);
        cfg.scaling = RopeScaling::Linear { factor: 2.0 };
        let (c, s) = rope_tables(&cfg, 40).unwrap();
        assert_eq!(c.len(), 40 * 4);
        for p in [0usize, 1, 17, 39] {
            for i in 0..4 {
                // HF: inv_freq = 1/(base^(2i/d)) / factor (here in f64, rounded once).
                let inv = (1.0 / 10000f64.powf(2.0 * i as f64 / 8.0) / 2.0) as f32;
                let angle = p as f32 * inv;
                assert_eq!(c[p * 4 + i], (angle as f64).cos() as f32);
                assert_eq!(s[p * 4 + i], (angle as f64).sin() as f32);
            }
        }
    }
}
