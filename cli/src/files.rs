//! File helpers: reading whole files with clear errors, 4-byte aligned byte
//! buffers (images and llama2.c checkpoints are read in place and need it), and
//! writing an output file atomically.

use std::path::Path;

use microformer::image::Image;
use microformer::model::Model;

use crate::error::{CliError, Result};

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

/// Writes `bytes` to `path` through a temporary file in the same directory
/// (`.NAME.PID.N.partial`, created new: never an existing file), renamed over
/// `path` once complete, so that a failure never leaves a partial or truncated
/// output, nor replaces what was there; the temporary file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let cannot = |e: &dyn std::fmt::Display| {
        CliError::runtime(format!("cannot write {}: {e}", path.display()))
    };
    if path.is_dir() {
        return Err(cannot(&"it is a directory"));
    }
    let Some(name) = path.file_name() else {
        return Err(cannot(&"not a file name"));
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}.{}.partial",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| cannot(&e))?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| {
            drop(file);
            std::fs::rename(&tmp, path)
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(cannot(&e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed when dropped.
    struct Dir(std::path::PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_leaves_the_file_or_nothing() {
        let d = Dir(std::env::temp_dir().join(format!("microformer-files-{}", std::process::id())));
        std::fs::create_dir_all(&d.0).expect("mkdir");
        let out = d.0.join("out.mfi");
        write_atomic(&out, b"first").expect("write");
        write_atomic(&out, b"second").expect("overwrite");
        assert_eq!(std::fs::read(&out).expect("read"), b"second");
        assert_eq!(entries(&d.0), ["out.mfi"]);
        // A directory in the way: an error, and nothing new beside it.
        let sub = d.0.join("sub");
        std::fs::create_dir(&sub).expect("mkdir sub");
        let e = write_atomic(&sub, b"x").expect_err("a directory");
        assert!(e.0.contains("it is a directory"), "{e}");
        // A missing directory: an error naming the path.
        let e = write_atomic(&d.0.join("no/such/dir/out.mfi"), b"x").expect_err("no dir");
        assert!(e.0.starts_with("cannot write "), "{e}");
        assert_eq!(entries(&d.0), ["out.mfi", "sub"]);
    }
}
