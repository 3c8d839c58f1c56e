//! File helpers: reading whole files with clear errors, 4-byte aligned byte
//! buffers (images and llama2.c checkpoints are read in place and need it), and
//! writing an output file atomically.

use std::path::Path;

use microformer::image::Image;
use microformer::model::Model;

use crate::error::{fail, CliError, Result};

/// Reads a whole file (a runtime error naming the path otherwise).
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| CliError::runtime(format!("cannot read {}: {e}", path.display())))
}

/// Bytes stored at a 4-byte aligned address (the converters' type).
pub use microformer_convert::AlignedBytes as Aligned;

/// A model image read from a file.
pub struct ImageFile {
    data: Aligned,
    /// The path it came from (for messages).
    pub path: String,
}

impl ImageFile {
    /// Reads and keeps an image file (validated by [`ImageFile::image`]).
    pub fn load(path: &Path) -> Result<Self> {
        let data = Aligned::new(&read(path)?);
        let f = ImageFile {
            data,
            path: path.display().to_string(),
        };
        f.image()?;
        Ok(f)
    }

    /// The validated image.
    pub fn image(&self) -> Result<Image<'_>> {
        Image::parse(self.data.bytes()).map_err(|e| {
            CliError::runtime(format!("{}: not a valid microformer image: {e}", self.path))
        })
    }

    /// The runnable model.
    pub fn model(&self) -> Result<Model<'_>> {
        Model::new(self.image()?).map_err(|e| {
            CliError::runtime(format!(
                "{}: the image is not a runnable model: {e}",
                self.path
            ))
        })
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory, so
/// that a failure never leaves a partial output.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = std::path::PathBuf::from(tmp);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        fail!("cannot write {}: {e}", path.display());
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        fail!("cannot write {}: {e}", path.display());
    }
    Ok(())
}
