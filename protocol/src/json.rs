//! The JSON input rules of ASP.NET's "web" defaults: property names bind case-insensitively, unknown
//! properties are ignored and numbers may arrive as strings. Beyond them, Broker binds a body only
//! when it is a JSON object (never positionally from an array), explains a value that does not fit
//! in the words of the API (the field's JSON path and the kind of value it takes, never an internal
//! type name), and never holds more of a list or map than its validation can accept.

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// A request body whose top-level property names bind case-insensitively.
pub trait WireFields {
    /// The canonical (camelCase) property names, each with the kind of JSON value it takes, as error
    /// messages name it ("a string", "an array of strings", ...).
    const FIELDS: &'static [(&'static str, &'static str)];
}

/// Why a body could not be bound: the JSON path of the value (`$` for the body itself, `$.fileName`
/// for a property) and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for JsonError {}

/// The values of a JSON object's properties that name one of `fields` (case-insensitively; the last
/// of several spellings wins), left unparsed. Other properties are skipped as they are read, so an
/// object with millions of unknown properties costs no memory.
struct Bound<'a> {
    values: Vec<Option<&'a RawValue>>,
}

struct BindObject {
    fields: &'static [(&'static str, &'static str)],
}

impl<'de> DeserializeSeed<'de> for BindObject {
    type Value = Bound<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BindObject {
    type Value = Bound<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = vec![None; self.fields.len()];
        while let Some(field) = map.next_key_seed(FieldIndex(self.fields))? {
            match field {
                Some(i) => values[i] = Some(map.next_value::<&'de RawValue>()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Bound { values })
    }
}

/// A property name, as the index of the field it names (without keeping the name).
struct FieldIndex(&'static [(&'static str, &'static str)]);

impl<'de> DeserializeSeed<'de> for FieldIndex {
    type Value = Option<usize>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for FieldIndex {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }
    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .iter()
            .position(|(name, _)| name.eq_ignore_ascii_case(key)))
    }
}

fn not_an_object() -> JsonError {
    JsonError {
        path: "$".into(),
        message: "The request body must be a JSON object.".into(),
    }
}

/// Decodes `body`, binding each top-level property to the canonical name it matches case-insensitively
/// (the last of several wins, as in System.Text.Json). Nested maps (such as `propertyList`) keep their
/// keys as sent.
pub fn decode_case_insensitive<T: DeserializeOwned + WireFields>(
    body: &[u8],
) -> Result<T, JsonError> {
    let text = std::str::from_utf8(body).map_err(|_| JsonError {
        path: "$".into(),
        message: "The request body is not valid UTF-8.".into(),
    })?;
    if text.trim().is_empty() || text.trim() == "null" {
        return Err(JsonError {
            path: "$".into(),
            message: "A non-empty request body is required.".into(),
        });
    }
    let mut top = serde_json::Deserializer::from_str(text);
    let bound = BindObject { fields: T::FIELDS }
        .deserialize(&mut top)
        .and_then(|b| top.end().map(|()| b))
        .map_err(|e| {
            if e.is_data() {
                not_an_object()
            } else {
                JsonError {
                    path: "$".into(),
                    message: format!("The request body is not valid JSON: {e}."),
                }
            }
        })?
        .values;
    let mut canonical = String::with_capacity(text.len() + 16);
    canonical.push('{');
    for (i, value) in bound.iter().enumerate() {
        let Some(value) = value else { continue };
        if canonical.len() > 1 {
            canonical.push(',');
        }
        canonical.push('"');
        canonical.push_str(T::FIELDS[i].0);
        canonical.push_str("\":");
        canonical.push_str(value.get());
    }
    canonical.push('}');
    let mut deserializer = serde_json::Deserializer::from_str(&canonical);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = path.split(['.', '[']).next().unwrap_or_default();
        let kind = T::FIELDS
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, kind)| *kind);
        JsonError {
            message: match kind {
                Some(kind) => format!("The JSON value could not be converted to {kind}."),
                None => "The JSON value could not be converted.".into(),
            },
            path: format!("$.{path}"),
        }
    })
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
            .map_err(|_| serde::de::Error::custom("expected an integer")),
        Some(_) => Err(serde::de::Error::custom("expected an integer")),
    }
}

/// Like [`option_i64_lenient`], for 32-bit fields.
pub fn option_i32_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    option_i64_lenient(d)?
        .map(|v| i32::try_from(v).map_err(|_| serde::de::Error::custom("integer out of range")))
        .transpose()
}

/// An optional list of strings of which at most `N + 1` are kept: enough for validation to see that
/// more than `N` were sent, while a body with millions of entries is read without holding them.
pub fn bounded_strings<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    struct Bounded<const N: usize>;
    impl<'de, const N: usize> Visitor<'de> for Bounded<N> {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut kept = Vec::new();
            while kept.len() <= N {
                match seq.next_element::<String>()? {
                    Some(s) => kept.push(s),
                    None => return Ok(Some(kept)),
                }
            }
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Some(kept))
        }
    }
    d.deserialize_option(Bounded::<N>)
}

/// An optional string-to-string map of which at most `N + 1` entries are kept (see
/// [`bounded_strings`]).
pub fn bounded_string_map<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Bounded<const N: usize>;
    impl<'de, const N: usize> Visitor<'de> for Bounded<N> {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object of strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut kept = BTreeMap::new();
            while kept.len() <= N {
                match map.next_entry::<String, String>()? {
                    Some((k, v)) => {
                        kept.insert(k, v);
                    }
                    None => return Ok(Some(kept)),
                }
            }
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Some(kept))
        }
    }
    d.deserialize_option(Bounded::<N>)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct Sample {
        file_name: Option<String>,
        #[serde(default, deserialize_with = "option_i64_lenient")]
        size: Option<i64>,
        #[serde(default, deserialize_with = "bounded_string_map::<_, 3>")]
        property_list: Option<BTreeMap<String, String>>,
        #[serde(default, deserialize_with = "bounded_strings::<_, 2>")]
        recipients: Option<Vec<String>>,
        #[serde(default)]
        flag: Option<bool>,
    }
    impl WireFields for Sample {
        const FIELDS: &'static [(&'static str, &'static str)] = &[
            ("fileName", "a string"),
            ("size", "an integer"),
            ("propertyList", "an object of strings"),
            ("recipients", "an array of strings"),
            ("flag", "a boolean"),
        ];
    }

    fn decode(text: &str) -> Result<Sample, JsonError> {
        decode_case_insensitive(text.as_bytes())
    }

    #[test]
    fn pascal_case_names_bind_like_camel_case_and_nested_keys_are_kept() {
        let s =
            decode(r#"{"FileName":"a.txt","SIZE":"12","PropertyList":{"Key":"v"},"unknown":1}"#)
                .unwrap();
        assert_eq!(s.file_name.as_deref(), Some("a.txt"));
        assert_eq!(s.size, Some(12));
        assert_eq!(
            s.property_list.unwrap().get("Key").map(String::as_str),
            Some("v")
        );
    }

    #[test]
    fn unknown_properties_are_skipped_whatever_they_hold() {
        let many: Vec<String> = (0..100_000).map(|i| format!("\"k{i}\":0")).collect();
        let s = decode(&format!(
            r#"{{{},"fileName":"a","huge":4e892,"deep":[[{{}}]]}}"#,
            many.join(",")
        ))
        .unwrap();
        assert_eq!(s.file_name.as_deref(), Some("a"));
    }

    #[test]
    fn the_last_of_several_spellings_of_a_property_wins() {
        let s = decode(r#"{"fileName":"first","FILENAME":"last"}"#).unwrap();
        assert_eq!(s.file_name.as_deref(), Some("last"));
    }

    #[test]
    fn an_array_or_a_scalar_is_never_bound_as_an_object() {
        for body in ["[777]", "[]", "\"text\"", "12", "true"] {
            assert_eq!(decode(body).unwrap_err(), not_an_object(), "{body}");
        }
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_named_by_its_path_and_kind_without_type_names() {
        let e = decode(r#"{"fileName":"a","flag":"yes"}"#).unwrap_err();
        assert_eq!(e.path, "$.flag");
        assert_eq!(
            e.message,
            "The JSON value could not be converted to a boolean."
        );
        let e = decode(r#"{"recipients":["a",7]}"#).unwrap_err();
        assert_eq!(e.path, "$.recipients[1]");
        assert_eq!(
            e.message,
            "The JSON value could not be converted to an array of strings."
        );
        let e = decode(r#"{"size":"ab"}"#).unwrap_err();
        assert_eq!(e.path, "$.size");
        assert!(!e.message.contains("Sample") && !e.message.contains("i64"));
    }

    #[test]
    fn a_non_numeric_string_for_a_number_is_an_error() {
        assert!(decode(r#"{"fileName":"a","size":"ab"}"#).is_err());
        assert_eq!(decode(r#"{"flag":true}"#).unwrap().flag, Some(true));
    }

    #[test]
    fn malformed_and_empty_bodies_are_refused_at_the_root() {
        for body in ["{", "", "  ", "null", "{\"a\":}"] {
            assert_eq!(decode(body).unwrap_err().path, "$", "{body:?}");
        }
    }

    #[test]
    fn lists_and_maps_keep_one_entry_more_than_their_bound_and_no_more() {
        let many: Vec<String> = (0..10_000).map(|i| format!("\"r{i}\"")).collect();
        let s = decode(&format!(r#"{{"recipients":[{}]}}"#, many.join(","))).unwrap();
        assert_eq!(s.recipients.unwrap().len(), 3);
        let entries: Vec<String> = (0..1000).map(|i| format!("\"k{i}\":\"v\"")).collect();
        let s = decode(&format!(r#"{{"propertyList":{{{}}}}}"#, entries.join(","))).unwrap();
        assert_eq!(s.property_list.unwrap().len(), 4);
        let s = decode(r#"{"recipients":["a","b"],"propertyList":{"k":"v"}}"#).unwrap();
        assert_eq!(s.recipients.unwrap(), vec!["a", "b"]);
        let s = decode(r#"{"recipients":null,"propertyList":null}"#).unwrap();
        assert!(s.recipients.is_none() && s.property_list.is_none());
    }

    #[test]
    fn entries_past_the_bound_must_still_be_valid_json() {
        let e = decode(r#"{"recipients":["a","b","c","d",}"#).unwrap_err();
        assert_eq!(e.path, "$");
    }
}
