//! tus numbers and `Upload-Concat`: a number parses only from plain digits and prints back the same
//! way (bar leading zeros); a final list holds only non-empty URLs.
#![no_main]

use broker_protocol::tus_headers::{parse_concat, parse_number, UploadConcat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|value: &str| {
    if let Some(n) = parse_number(value) {
        assert!(value.bytes().all(|b| b.is_ascii_digit()));
        let digits = value.trim_start_matches('0');
        assert_eq!(n.to_string(), if digits.is_empty() { "0" } else { digits });
    }
    if let Some(UploadConcat::Final(urls)) = parse_concat(value) {
        assert!(urls.iter().all(|u| !u.is_empty() && !u.contains(char::is_whitespace)));
    }
});
