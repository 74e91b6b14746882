//! The JSON input rules of ASP.NET's "web" defaults: property names bind case-insensitively, unknown
//! properties are ignored and numbers may arrive as strings.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A request body whose top-level property names bind case-insensitively.
pub trait WireFields {
    /// The canonical (camelCase) property names.
    const FIELDS: &'static [&'static str];
}

/// Decodes `body`, renaming each top-level property to the canonical name it matches case-insensitively.
/// Nested maps (such as `propertyList`) keep their keys as sent.
pub fn decode_case_insensitive<T: DeserializeOwned + WireFields>(
    body: &[u8],
) -> Result<T, serde_json::Error> {
    let mut value: Value = serde_json::from_slice(body)?;
    if let Value::Object(map) = &mut value {
        let renamed = std::mem::take(map)
            .into_iter()
            .map(|(key, v)| {
                let canonical = T::FIELDS
                    .iter()
                    .find(|f| f.eq_ignore_ascii_case(&key))
                    .map(|f| f.to_string());
                (canonical.unwrap_or(key), v)
            })
            .collect();
        *map = renamed;
    }
    serde_json::from_value(value)
}

/// Deserializes an optional integer written either as a JSON number or as a JSON string.
pub fn option_i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("expected an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("'{s}' is not an integer"))),
        Some(other) => Err(serde::de::Error::custom(format!(
            "expected an integer, got {other}"
        ))),
    }
}

/// Like [`option_i64_lenient`], for 32-bit fields.
pub fn option_i32_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    option_i64_lenient(d)?
        .map(|v| i32::try_from(v).map_err(|_| serde::de::Error::custom("integer out of range")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct Sample {
        file_name: String,
        #[serde(default, deserialize_with = "option_i64_lenient")]
        size: Option<i64>,
        #[serde(default)]
        property_list: std::collections::BTreeMap<String, String>,
    }
    impl WireFields for Sample {
        const FIELDS: &'static [&'static str] = &["fileName", "size", "propertyList"];
    }

    #[test]
    fn pascal_case_names_bind_like_camel_case_and_nested_keys_are_kept() {
        let s: Sample = decode_case_insensitive(
            br#"{"FileName":"a.txt","SIZE":"12","PropertyList":{"Key":"v"},"unknown":1}"#,
        )
        .unwrap();
        assert_eq!(s.file_name, "a.txt");
        assert_eq!(s.size, Some(12));
        assert_eq!(s.property_list.get("Key").map(String::as_str), Some("v"));
    }

    #[test]
    fn a_non_numeric_string_for_a_number_is_an_error() {
        let r: Result<Sample, _> = decode_case_insensitive(br#"{"fileName":"a","size":"ab"}"#);
        assert!(r.is_err());
    }
}
