//! A tiny language model end to end on the host, through the same API a
//! firmware uses: an image, one block of memory, a generator of tokens.
//!
//! ```sh
//! cargo run -p microformer-cli --release -- convert MODEL.bin --tokenizer TOK.bin -o model.mfi
//! cargo run --release --example generate -- model.mfi "Once upon a time" 64
//! ```
//!
//! Arguments: the image, the prompt (default empty: BOS), the steps (default:
//! the whole context). Greedy (temperature 0), so the text is llama2.c's
//! `run -t 0` text for a llama2.c checkpoint.

use std::io::Write;

use microformer::lm::{buffer_sizes, Buffers, Generator, Options, Prompt};
use microformer::model::{KvFormat, Model};
use microformer::sampler::ProbIndex;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: generate MODEL.mfi [PROMPT] [STEPS]")?;
    let prompt = args.next().unwrap_or_default();
    let steps = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);

    // The image, 4-byte aligned (as in flash, where `include_image!` aligns it).
    let bytes = std::fs::read(&path)?;
    let mut words = vec![0u32; bytes.len().div_ceil(4)];
    bytemuck::cast_slice_mut::<u32, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
    let image = &bytemuck::cast_slice::<u32, u8>(&words)[..bytes.len()];
    let model = Model::from_bytes(image)?;

    // The memory a firmware would declare as one `static` `lm::Memory`.
    let [arena, index, probs, tokens] = buffer_sizes(
        &model,
        prompt.len(),
        KvFormat::F32,
        microformer::model::Arith::Float,
    );
    let (mut arena, mut index) = (vec![0u8; arena], vec![0u32; index]);
    let mut probs = vec![ProbIndex::default(); probs];
    let mut tokens = vec![0u32; tokens];
    let buffers = Buffers {
        arena: &mut arena,
        index: &mut index,
        probs: &mut probs,
        tokens: &mut tokens,
    };

    let options = Options {
        prompt: Prompt::Text(&prompt),
        steps,
        temperature: 0.0,
        ..Options::DEFAULT
    };
    let mut out = std::io::stdout().lock();
    let mut generator = Generator::new(&model, buffers, &options)?;
    // An image without a tokenizer (a Hugging Face conversion) yields ids only.
    let text = generator.tokenizer().is_some();
    for token in &mut generator {
        let token = token?;
        if text {
            out.write_all(token.text)?;
        } else {
            write!(out, "{} ", token.id)?;
        }
    }
    writeln!(out)?;
    let g = generator.generated();
    eprintln!(
        "{} positions, {} tokens{}",
        g.positions,
        g.emitted,
        if g.stopped { ", stopped on BOS" } else { "" }
    );
    Ok(())
}
