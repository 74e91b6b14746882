//! broker-bench: measures Broker the way its users see it, through the public API only (the protocol
//! crate's client), next to anchors measured in the same run on the same machine.
//!
//! Scenarios: `upload` (one large binary upload), `download` (full and N-way parallel Range),
//! `lifecycle` (many small transfers by concurrent clients) and `mixed` (large transfers beside the
//! small-transfer load). Each yields a [`report::ScenarioResult`]; see `schema/report-v1.json`.

pub mod anchors;
pub mod chart;
pub mod http;
pub mod payload;
pub mod peers;
pub mod procwatch;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod target;
pub mod tus;

/// Parses sizes like `2GiB`, `512MiB`, `1KiB`, `1000` (bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let units: [(&str, u64); 7] = [
        ("gib", 1 << 30),
        ("mib", 1 << 20),
        ("kib", 1 << 10),
        ("gb", 1_000_000_000),
        ("mb", 1_000_000),
        ("kb", 1_000),
        ("b", 1),
    ];
    let (number, multiplier) = units
        .iter()
        .find_map(|(suffix, m)| t.strip_suffix(suffix).map(|n| (n, *m)))
        .unwrap_or((t.as_str(), 1));
    let n: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid size {text:?}"))?;
    Ok((n * multiplier as f64) as u64)
}

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
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(
            parse_duration("20s"),
            Ok(std::time::Duration::from_secs(20))
        );
        assert_eq!(
            parse_duration("500ms"),
            Ok(std::time::Duration::from_millis(500))
        );
        assert!(parse_size("big").is_err());
    }
}
