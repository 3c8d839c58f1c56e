//! Writing numbers and arrays as JSON, Rust and C source text.
//!
//! Every `f32` is written as the shortest decimal that reads back as the same
//! `f32` (Rust's `{:?}` formatting: `1.0`, `0.1`, `1e-7`), which is a valid
//! number in JSON, a valid `f32` literal in Rust, and, with an `f` suffix, a
//! valid `float` literal in C that a correctly rounding compiler turns back into
//! the same bits.

use std::fmt::Write as _;

use crate::error::{bail, Result};

/// Output format of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A JSON object.
    Json,
    /// Rust `pub const` / `pub static` items.
    Rust,
    /// A C header with an include guard.
    C,
}

/// The shortest decimal that round-trips this `f32` (must be finite).
pub fn f32_repr(x: f32) -> String {
    format!("{x:?}")
}

/// A C `float` literal: the shortest round-trip decimal with an `f` suffix.
pub fn c_f32_repr(x: f32) -> String {
    format!("{x:?}f")
}

/// Fails if any value is not finite (JSON, Rust and C literals need finite numbers).
pub fn ensure_finite(what: &str, values: &[f32]) -> Result<()> {
    if let Some((i, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        bail!("{what}[{i}] is {v}, not a finite number");
    }
    Ok(())
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    // serde_json never fails to serialise a str.
    serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""))
}

/// Text safe inside a `//` or `/* */` comment: no line breaks, no `*/`.
pub fn comment_safe(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect::<String>()
        .replace("*/", "* /")
}

/// Joins items with `", "`.
fn join<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    let mut out = String::new();
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&f(x));
    }
    out
}

/// `[a, b, c]` with JSON/Rust float literals.
pub fn f32_list(values: &[f32]) -> String {
    format!("[{}]", join(values, |x| f32_repr(*x)))
}

/// `{a, b, c}` with C float literals.
pub fn c_f32_list(values: &[f32]) -> String {
    format!("{{{}}}", join(values, |x| c_f32_repr(*x)))
}

/// `[a, b, c]` for integers (JSON and Rust).
pub fn int_list<T: std::fmt::Display>(values: &[T]) -> String {
    format!("[{}]", join(values, |x| x.to_string()))
}

/// `{a, b, c}` for integers (C).
pub fn c_int_list<T: std::fmt::Display>(values: &[T]) -> String {
    format!("{{{}}}", join(values, |x| x.to_string()))
}

/// Rows of a row-major matrix, `cols` per row (`cols > 0`).
fn rows(flat: &[f32], cols: usize) -> impl Iterator<Item = &[f32]> {
    flat.chunks(cols.max(1))
}

/// A JSON array of rows, one row per line, indented by `indent` spaces.
pub fn json_matrix(flat: &[f32], cols: usize, indent: usize) -> String {
    if flat.is_empty() {
        return String::from("[]");
    }
    let pad = " ".repeat(indent + 2);
    let mut out = String::from("[\n");
    let n = flat.len() / cols.max(1);
    for (i, row) in rows(flat, cols).enumerate() {
        let _ = write!(out, "{pad}{}", f32_list(row));
        out.push_str(if i + 1 < n { ",\n" } else { "\n" });
    }
    out.push_str(&" ".repeat(indent));
    out.push(']');
    out
}

/// A Rust 2-D array expression, one row per line.
pub fn rust_matrix(flat: &[f32], cols: usize) -> String {
    let mut out = String::from("[\n");
    for row in rows(flat, cols) {
        let _ = writeln!(out, "    {},", f32_list(row));
    }
    out.push(']');
    out
}

/// A C 2-D initializer, one row per line.
pub fn c_matrix(flat: &[f32], cols: usize) -> String {
    let mut out = String::from("{\n");
    let n = flat.len() / cols.max(1);
    for (i, row) in rows(flat, cols).enumerate() {
        let _ = write!(out, "    {}", c_f32_list(row));
        out.push_str(if i + 1 < n { ",\n" } else { "\n" });
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_round_trip() {
        for x in [
            0.1f32,
            1.0,
            -0.5,
            1e-7,
            3.4028235e38,
            1.0e-45,
            f32::MIN_POSITIVE,
            0.333_333_34,
            16_777_217.0,
        ] {
            let s = f32_repr(x);
            assert_eq!(s.parse::<f32>().unwrap().to_bits(), x.to_bits(), "{s}");
            // JSON accepts it and reads back the same f32.
            let v: f64 = serde_json::from_str(&s).unwrap();
            assert_eq!((v as f32).to_bits(), x.to_bits(), "{s}");
        }
        assert_eq!(f32_repr(0.1), "0.1");
        assert_eq!(c_f32_repr(1.0), "1.0f");
        assert_eq!(c_f32_repr(1e-7), "1e-7f");
    }

    #[test]
    fn matrices() {
        assert_eq!(
            json_matrix(&[1.0, 2.0, 3.0, 4.0], 2, 4),
            "[\n      [1.0, 2.0],\n      [3.0, 4.0]\n    ]"
        );
        assert_eq!(c_matrix(&[1.0, 2.0], 1), "{\n    {1.0f},\n    {2.0f}\n}");
        assert_eq!(rust_matrix(&[1.0], 1), "[\n    [1.0],\n]");
        assert!(ensure_finite("x", &[1.0, f32::NAN]).is_err());
        assert_eq!(comment_safe("a*/b\nc"), "a* /b?c");
    }
}
