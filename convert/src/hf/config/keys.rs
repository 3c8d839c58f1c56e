//! The value types of `config.json` keys, for the serde-derived config structs,
//! and [`view`], which deserializes such a struct from the parsed file with an
//! error that names the key.
//!
//! Each type checks one kind of value the way transformers' configs hold it —
//! [`Count`] a non-negative integer (`64` or `64.0`), [`Number`] any number,
//! [`Flag`] a boolean, [`Numbers`] a list of numbers, [`Name`] a string,
//! [`TokenId`] a token id or a list of them, [`Dict`] a nested object — and says
//! what is wrong in words (`"head_dim" must be a non-negative integer, got
//! "eight"`). `null` counts as absent wherever the field is an `Option` (as
//! transformers reads `None`); [`Maybe`] keeps absent and `null` apart where
//! the config classes give them different meanings.

use std::fmt::Display;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::error::{bail, Error, Result};

/// Stands for the key's path in the messages of the types below; [`view`]
/// replaces it (`rope_parameters.factor`).
const KEY: &str = "{key}";

/// An error message with the key's path to fill in.
fn keyed<E: serde::de::Error>(message: impl Display) -> E {
    E::custom(message)
}

/// Deserializes `T` from a parsed `config.json` (or a part of one).
///
/// Errors ([`crate::error::ErrorKind::Config`]) name the key with its path: the
/// messages of the key types with the path filled in, or serde's own (a wrong
/// type for a derived field) after the path.
pub fn view<T: DeserializeOwned>(value: &Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        Error::config(fill(&e.inner().to_string(), &path))
    })
}

/// `message` with the key's path filled in, or after it.
fn fill(message: &str, path: &str) -> String {
    if message.contains(KEY) {
        message.replace(KEY, path)
    } else {
        format!("{path}: {message}")
    }
}

/// A non-negative integer; an integral float (`64.0`) counts too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count(pub usize);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if let Some(u) = v.as_u64() {
            return usize::try_from(u)
                .map(Count)
                .map_err(|_| keyed(format!("\"{KEY}\" = {u} is too large")));
        }
        match v.as_f64() {
            Some(f)
                if f.is_finite()
                    && f >= 0.0
                    && f.fract() == 0.0
                    && f <= usize::MAX as f64 / 2.0 =>
            {
                Ok(Count(f as usize))
            }
            _ => Err(keyed(format!(
                "\"{KEY}\" must be a non-negative integer, got {v}"
            ))),
        }
    }
}

/// A number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        v.as_f64()
            .map(Number)
            .ok_or_else(|| keyed(format!("\"{KEY}\" must be a number, got {v}")))
    }
}

/// `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        v.as_bool()
            .map(Flag)
            .ok_or_else(|| keyed(format!("\"{KEY}\" must be true or false, got {v}")))
    }
}

/// A list of numbers (LongRoPE's factors).
#[derive(Debug, Clone, PartialEq)]
pub struct Numbers(pub Vec<f64>);

impl<'de> Deserialize<'de> for Numbers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let Value::Array(a) = &v else {
            return Err(keyed(format!(
                "\"{KEY}\" must be a list of numbers, got {v}"
            )));
        };
        a.iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| keyed(format!("\"{KEY}\" must hold numbers, got {x}")))
            })
            .collect::<std::result::Result<_, _>>()
            .map(Numbers)
    }
}

/// A string (an activation's or a RoPE type's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(pub String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Name(s)),
            v => Err(keyed(format!("{KEY} must be a string, got {v}"))),
        }
    }
}

/// `bos_token_id`/`eos_token_id`: a token id, or a list whose first entry is the
/// one used (`None`: an empty list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenId(pub Option<u64>);

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        let id = match &v {
            Value::Array(a) => match a.first() {
                None => return Ok(TokenId(None)),
                Some(first) => first,
            },
            one => one,
        };
        id.as_u64()
            .map(|i| TokenId(Some(i)))
            .ok_or_else(|| keyed(format!("{KEY} must be a token id, got {id}")))
    }
}

/// A key whose absence and `null` mean different things (GPT-J's `rotary_dim`:
/// 64 when absent, the whole head when `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Maybe<T> {
    /// Not in the file.
    #[default]
    Absent,
    /// `null`.
    Null,
    /// A value.
    Value(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Maybe<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Maybe::Null,
            Some(v) => Maybe::Value(v),
        })
    }
}

/// A nested object (`rope_parameters`, `attn_config`) of the derived struct `T`;
/// errors inside it name their key with its path (`rope_parameters.factor`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dict<T>(pub T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Dict<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        if !v.is_object() {
            return Err(keyed(format!("key \"{KEY}\" must be an object or null")));
        }
        serde_path_to_error::deserialize(&v).map(Dict).map_err(|e| {
            let inner = format!("{KEY}.{}", e.path());
            D::Error::custom(fill(&e.inner().to_string(), &inner))
        })
    }
}

/// The value of an optional [`Count`].
pub fn count(v: Option<Count>) -> Option<usize> {
    v.map(|c| c.0)
}

/// The value of an optional [`Number`].
pub fn number(v: Option<Number>) -> Option<f64> {
    v.map(|n| n.0)
}

/// The value of an optional [`Flag`], or `default`.
pub fn flag_or(v: Option<Flag>, default: bool) -> bool {
    v.map_or(default, |f| f.0)
}

/// A required key: its value, or `missing key "KEY"` (`ctx.KEY` inside `ctx`).
pub fn required<T>(v: Option<T>, ctx: &str, key: &str) -> Result<T> {
    match v {
        Some(v) => Ok(v),
        None => bail!("missing key {}", key_name(ctx, key)),
    }
}

/// A key under the first of several names that is present (a family's
/// `attribute_map`), or `missing key "A" or "B"`.
pub fn required_any<T: Copy>(names: &[(Option<T>, &str)]) -> Result<T> {
    if let Some(v) = names.iter().find_map(|(v, _)| *v) {
        return Ok(v);
    }
    let list: Vec<String> = names.iter().map(|(_, k)| format!("\"{k}\"")).collect();
    bail!("missing key {}", list.join(" or "))
}

/// `"key"`, or `"ctx.key"` inside the object `ctx`.
pub fn key_name(ctx: &str, key: &str) -> String {
    if ctx.is_empty() {
        format!("\"{key}\"")
    } else {
        format!("\"{ctx}.{key}\"")
    }
}

/// `v` when it is finite and > 0, else an error naming the key.
pub fn positive(v: f64, ctx: &str, key: &str) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        bail!(
            "{} must be a finite number > 0, got {v}",
            key_name(ctx, key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Inner {
        factor: Option<Number>,
        list: Option<Numbers>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(default)]
    struct Keys {
        n: Option<Count>,
        x: Option<Number>,
        b: Option<Flag>,
        s: Option<Name>,
        t: Option<TokenId>,
        m: Maybe<Count>,
        d: Option<Dict<Inner>>,
    }

    fn keys(text: &str) -> Result<Keys> {
        view(&serde_json::from_str(text).unwrap())
    }

    fn err(text: &str) -> String {
        keys(text).unwrap_err().message().to_string()
    }

    #[test]
    fn values_and_absence() {
        let k =
            keys(r#"{"n":64.0,"x":2,"b":true,"s":"silu","t":[7,9],"m":null,"d":{"factor":1.5}}"#)
                .unwrap();
        assert_eq!(k.n, Some(Count(64)));
        assert_eq!(k.x, Some(Number(2.0)));
        assert_eq!(k.b, Some(Flag(true)));
        assert_eq!(k.s, Some(Name("silu".into())));
        assert_eq!(k.t, Some(TokenId(Some(7))));
        assert_eq!(k.m, Maybe::Null);
        assert_eq!(k.d.unwrap().0.factor, Some(Number(1.5)));
        let k = keys(r#"{"n":null,"t":[],"other":"ignored"}"#).unwrap();
        assert_eq!((k.n, k.t, k.m), (None, Some(TokenId(None)), Maybe::Absent));
        assert_eq!(keys(r#"{"m":3}"#).unwrap().m, Maybe::Value(Count(3)));
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            err(r#"{"n":"eight"}"#),
            "\"n\" must be a non-negative integer, got \"eight\""
        );
        assert_eq!(
            err(r#"{"n":-1}"#),
            "\"n\" must be a non-negative integer, got -1"
        );
        assert_eq!(err(r#"{"x":"1"}"#), "\"x\" must be a number, got \"1\"");
        assert_eq!(err(r#"{"b":1}"#), "\"b\" must be true or false, got 1");
        assert_eq!(err(r#"{"s":5}"#), "s must be a string, got 5");
        assert_eq!(err(r#"{"t":"x"}"#), "t must be a token id, got \"x\"");
        assert_eq!(err(r#"{"d":3}"#), "key \"d\" must be an object or null");
        assert_eq!(
            err(r#"{"d":{"factor":"big"}}"#),
            "\"d.factor\" must be a number, got \"big\""
        );
        assert_eq!(
            err(r#"{"d":{"list":[1,"a"]}}"#),
            "\"d.list\" must hold numbers, got \"a\""
        );
        assert_eq!(
            err(r#"{"d":{"list":4}}"#),
            "\"d.list\" must be a list of numbers, got 4"
        );
        assert_eq!(
            required::<u8>(None, "rope_parameters", "factor")
                .unwrap_err()
                .message(),
            "missing key \"rope_parameters.factor\""
        );
        assert_eq!(
            required_any::<u8>(&[(None, "n_embd"), (None, "hidden_size")])
                .unwrap_err()
                .message(),
            "missing key \"n_embd\" or \"hidden_size\""
        );
        assert_eq!(required_any(&[(None, "a"), (Some(3), "b")]).unwrap(), 3);
    }
}
