//! broker-bench: measures Broker the way its users see it, through the public API only (the protocol
//! crate's client), next to anchors measured in the same run on the same machine.
//!
//! Scenarios: `upload` (one large binary upload), `download` (full and N-way parallel Range),
//! `lifecycle` (many small transfers by concurrent clients) and `mixed` (large transfers beside the
//! small-transfer load). Each yields a [`report::ScenarioResult`]; see `schema/report-v1.json`.

pub mod anchors;
pub mod chart;
pub mod clamd;
pub mod http;
pub mod payload;
pub mod peers;
pub mod procwatch;
pub mod receiver;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod target;
pub mod tus;

pub use broker_protocol::size::{parse_positive_size, parse_size};

/// Parses durations like `20s`, `500ms`, `2m`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" => n * 60.0,
        _ => return Err(format!("invalid duration {text:?}: use ms, s or m")),
    };
    Ok(std::time::Duration::from_secs_f64(secs))
}

pub const MIB: f64 = 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(
            parse_duration("20s"),
            Ok(std::time::Duration::from_secs(20))
        );
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert!(parse_duration("soon").is_err());
    }
}
