//! On-target tests, the language model: llama2.c's generation loop on a model image embedded
//! in flash, token for token against the host.
//!
//! Shared by every board (`[[test]] path = "../suites/generate.rs"`). The board's build script
//! (`microformer_firmware::host::write_generate`) converts the test models with the library's
//! conversion — the project's own models (`models/t5` Q8 greedy past its training length,
//! `models/alibi` f32 with a prompt and seeded top-p, `models/sinusoidal` Q8 with the int8 KV
//! cache; and the integer step on `models/rope`, `alibi`, `t5` and `sinusoidal`) and, when the
//! reference folder is there, aidreams260K (f32, greedy; Q8, a prompt and seeded top-p sampling;
//! the integer step) on the Cortex-M3, M4F and M33; a tiny random-weight model (f32 greedy, Q8
//! top-p, f32 with the int8 cache, the integer step greedy and with top-p) on the Cortex-M0's
//! 16 KiB of RAM — runs each with the same code on the
//! host, and writes the ids and text it emits to `OUT_DIR/generate.rs`. Here every test runs on
//! the target and must emit the same ids (word for word), the same text (byte for byte), and for
//! aidreams260K's greedy run llama2.c's own ids.
#![no_std]
#![no_main]

use board as _; // logger, panic and fault handlers, exit codes

mod gen {
    include!(concat!(env!("OUT_DIR"), "/generate.rs"));
}

#[defmt_test::tests]
mod tests {
    use microformer_firmware::lm::{check_generate, Buffers};
    use microformer_firmware::microformer::sampler::ProbIndex;
    use microformer_firmware::Failure;

    use crate::gen;

    #[test]
    fn generates_the_hosts_tokens() -> Result<(), Failure> {
        let mut arena = [0u8; gen::GEN_ARENA];
        let mut index = [0u32; gen::GEN_INDEX];
        let mut probs = [ProbIndex {
            prob: 0.0,
            index: 0,
        }; gen::GEN_PROBS];
        let mut tokens = [0u32; gen::GEN_TOKENS];
        for t in gen::TESTS {
            let buffers = Buffers {
                arena: &mut arena,
                index: &mut index,
                probs: &mut probs,
                tokens: &mut tokens,
            };
            let passed = check_generate(t, buffers)?;
            defmt::info!(
                "{=str}: {=u32} tokens identical to the host{=str}",
                t.name,
                passed.words,
                if t.llama2c_ids.is_empty() {
                    ""
                } else {
                    " and to llama2.c"
                }
            );
        }
        Ok(())
    }
}
