//! Reading input files with errors that name them.

use std::path::Path;

use crate::error::{Error, Result};

/// Reads a whole file ([`crate::error::ErrorKind::Input`] naming the path otherwise).
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::input(format!("cannot read {}: {e}", path.display())))
}
