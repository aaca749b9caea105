//! Canonical JSON exactly as securesystemslib's `encode_canonical` (OLPC canonical JSON) writes it.
//!
//! TUF signatures cover these bytes. Object keys are sorted by code point (UTF-8 byte order equals code-point
//! order), there is no whitespace, only `"` and `\` are escaped inside strings (control characters, e.g. the
//! newlines of PEM keys, are written raw), and non-integer numbers are refused. This is not RFC 8785 (JCS).

use serde_json::Value;

/// Why a JSON value has no canonical form.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CanonicalError {
    /// OLPC canonical JSON has no representation for floating-point numbers.
    #[error("canonical JSON cannot encode the non-integer number {0}")]
    NonInteger(String),
}

/// Encodes `value` as canonical JSON bytes.
pub fn encode(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out)?;
    Ok(out)
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(number) => {
            if let Some(int) = number.as_i64() {
                out.extend_from_slice(int.to_string().as_bytes());
            } else if let Some(uint) = number.as_u64() {
                out.extend_from_slice(uint.to_string().as_bytes());
            } else {
                return Err(CanonicalError::NonInteger(number.to_string()));
            }
        }
        Value::String(text) => write_string(text, out),
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sort explicitly: serde_json's map keeps insertion order if another crate enables `preserve_order`.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    for byte in text.bytes() {
        if byte == b'"' || byte == b'\\' {
            out.push(b'\\');
        }
        out.push(byte);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_securesystemslib_rules() {
        let value: Value =
            serde_json::from_str(r#"{"b": [1, -2, true, null], "a": "x\"y\\z\n\u00e9", "A": {}}"#)
                .unwrap();
        let bytes = encode(&value).unwrap();
        assert_eq!(
            bytes,
            "{\"A\":{},\"a\":\"x\\\"y\\\\z\n\u{e9}\",\"b\":[1,-2,true,null]}".as_bytes()
        );
    }

    #[test]
    fn refuses_floats() {
        let value: Value = serde_json::from_str(r#"{"a": 1.5}"#).unwrap();
        assert_eq!(
            encode(&value),
            Err(CanonicalError::NonInteger("1.5".into()))
        );
    }
}
