//! `Upload-Metadata`: whatever parses has unique, non-empty keys without spaces, and encodes back to a
//! header that parses to the same pairs.
#![no_main]

use broker_protocol::tus_headers::parse_metadata;
use libfuzzer_sys::fuzz_target;

fn encode(pairs: &[(String, Vec<u8>)]) -> String {
    use base64_lite::encode;
    pairs
        .iter()
        .map(|(k, v)| format!("{k} {}", encode(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Standard, padded base64 (what tus clients send), written out here so the check does not trust the
/// decoder it checks.
mod base64_lite {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fuzz_target!(|value: &str| {
    let Ok(pairs) = parse_metadata(value) else {
        return;
    };
    for (i, (key, _)) in pairs.iter().enumerate() {
        assert!(!key.is_empty() && !key.contains([' ', ',']), "{key:?}");
        assert!(pairs[..i].iter().all(|(k, _)| k != key), "duplicate {key:?}");
    }
    if !pairs.is_empty() {
        assert_eq!(parse_metadata(&encode(&pairs)).unwrap(), pairs);
    }
});
