//! The grammar of tus 1.0.0 request headers as the server reads them: strict, so that what one tus
//! server would refuse with 400 is refused here too.

use base64::Engine;

/// `Upload-Length`, `Upload-Offset`: a non-negative integer in decimal digits only (no sign, no
/// spaces, no leading `+`), that fits in 64 bits.
pub fn parse_number(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataError {
    EmptyPair,
    EmptyKey,
    InvalidKey(String),
    NotBase64(String),
    DuplicateKey(String),
}

impl std::fmt::Display for MetadataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetadataError::EmptyPair => f.write_str("Upload-Metadata has an empty key-value pair"),
            MetadataError::EmptyKey => f.write_str("Upload-Metadata has a pair without a key"),
            MetadataError::InvalidKey(k) => write!(f, "Upload-Metadata key {k:?} is not valid"),
            MetadataError::NotBase64(k) => {
                write!(f, "Upload-Metadata value of {k:?} is not valid base64")
            }
            MetadataError::DuplicateKey(k) => write!(f, "Upload-Metadata key {k:?} appears twice"),
        }
    }
}

impl std::error::Error for MetadataError {}

/// `Upload-Metadata`: comma-separated pairs of a key (no spaces or commas, not empty, unique) and a
/// base64 value separated by one space; a key alone has an empty value. An empty header (tuspy sends
/// one when there is no metadata) holds no pairs.
pub fn parse_metadata(value: &str) -> Result<Vec<(String, Vec<u8>)>, MetadataError> {
    let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut keys = std::collections::HashSet::new();
    if value.trim_matches([' ', '\t']).is_empty() {
        return Ok(pairs);
    }
    for pair in value.split(',') {
        let pair = pair.trim_matches([' ', '\t']);
        if pair.is_empty() {
            return Err(MetadataError::EmptyPair);
        }
        let (key, encoded) = match pair.split_once(' ') {
            Some((k, v)) => (k, v),
            None => (pair, ""),
        };
        if key.is_empty() {
            return Err(MetadataError::EmptyKey);
        }
        if key.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(MetadataError::InvalidKey(key.to_string()));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| MetadataError::NotBase64(key.to_string()))?;
        if !keys.insert(key) {
            return Err(MetadataError::DuplicateKey(key.to_string()));
        }
        pairs.push((key.to_string(), decoded));
    }
    Ok(pairs)
}

/// The algorithms of the tus checksum extension this broker verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Md5,
    Sha256,
}

/// `Upload-Checksum: <algorithm> <base64 digest>`: the algorithm and the digest a body must have.
pub fn parse_checksum(value: &str) -> Result<(ChecksumAlgorithm, Vec<u8>), &'static str> {
    use base64::Engine;
    let (algorithm, digest) = value
        .trim()
        .split_once(' ')
        .ok_or("Upload-Checksum must be '<algorithm> <base64>'")?;
    let algorithm = match algorithm.to_ascii_lowercase().as_str() {
        "sha1" => ChecksumAlgorithm::Sha1,
        "md5" => ChecksumAlgorithm::Md5,
        "sha256" => ChecksumAlgorithm::Sha256,
        _ => return Err("Unsupported checksum algorithm; use sha1, md5 or sha256"),
    };
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| "The Upload-Checksum digest is not base64")?;
    Ok((algorithm, digest))
}

/// `Upload-Concat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadConcat<'a> {
    /// `partial`: this upload is one part of a later concatenation.
    Partial,
    /// `final;<url> <url> …`: the parts to join, in order.
    Final(Vec<&'a str>),
}

/// Reads `Upload-Concat`; `None` when it is neither form.
pub fn parse_concat(value: &str) -> Option<UploadConcat<'_>> {
    let value = value.trim();
    if value == "partial" {
        return Some(UploadConcat::Partial);
    }
    let list = value.strip_prefix("final;")?;
    Some(UploadConcat::Final(list.split_whitespace().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_plain_decimal_digits() {
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("1024"), Some(1024));
        assert_eq!(parse_number("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+10",
            " 10",
            "10 ",
            "-1",
            "1e3",
            "0x10",
            "18446744073709551616",
            "1 0",
        ] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn metadata_pairs_decode_and_a_key_alone_has_an_empty_value() {
        let pairs = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential")
            .unwrap();
        assert_eq!(pairs[0].0, "filename");
        assert_eq!(pairs[0].1, b"world_domination_plan.pdf");
        assert_eq!(pairs[1], ("is_confidential".to_string(), vec![]));
        assert!(parse_metadata("a YQ==, b Yg==").is_ok());
        assert_eq!(parse_metadata(""), Ok(vec![]));
        assert_eq!(parse_metadata("  "), Ok(vec![]));
    }

    #[test]
    fn malformed_metadata_is_refused() {
        assert!(matches!(
            parse_metadata("filename !!!"),
            Err(MetadataError::NotBase64(_))
        ));
        assert!(matches!(
            parse_metadata("a YQ==,a Yg=="),
            Err(MetadataError::DuplicateKey(_))
        ));
        assert!(matches!(
            parse_metadata("a YQ==,"),
            Err(MetadataError::EmptyPair)
        ));
        assert!(matches!(
            parse_metadata(",a YQ=="),
            Err(MetadataError::EmptyPair)
        ));
        assert!(matches!(
            parse_metadata("a YQ== extra"),
            Err(MetadataError::NotBase64(_))
        ));
    }

    #[test]
    fn concat_is_partial_or_a_final_list() {
        assert_eq!(parse_concat("partial"), Some(UploadConcat::Partial));
        assert_eq!(
            parse_concat("final;/a /b"),
            Some(UploadConcat::Final(vec!["/a", "/b"]))
        );
        assert_eq!(parse_concat("final"), None);
        assert_eq!(parse_concat("whole"), None);
    }
}
