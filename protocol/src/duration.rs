//! ISO-8601 durations as .NET's `XmlConvert.ToTimeSpan` reads them, and `TimeSpan.ToString()` output.

use chrono::Duration;

/// Parses `P[nY][nM][nD][T[nH][nM][n[.f]S]]` (a year is 365 days, a month 30, as XmlConvert counts).
/// Negative durations make no sense for a lifetime or a grace period and are refused.
pub fn parse_iso8601(text: &str) -> Option<Duration> {
    let s = text.trim();
    let s = s.strip_prefix('P')?;
    let (date, time) = match s.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (s, None),
    };
    if date.is_empty() && time.is_none() {
        return None;
    }
    let mut micros: i128 = 0;
    let mut add = |part: &str, units: &[(char, i128)]| -> Option<()> {
        let mut number = String::new();
        let mut next_unit = 0;
        for c in part.chars() {
            if c.is_ascii_digit() || (c == '.' && units.iter().any(|u| u.0 == 'S')) {
                number.push(c);
                continue;
            }
            let idx = units.iter().position(|u| u.0 == c)?;
            if idx < next_unit || number.is_empty() {
                return None;
            }
            next_unit = idx + 1;
            let value: f64 = number.parse().ok()?;
            if c != 'S' && number.contains('.') {
                return None;
            }
            micros += (value * units[idx].1 as f64).round() as i128;
            number.clear();
        }
        number.is_empty().then_some(())
    };
    const SEC: i128 = 1_000_000;
    add(
        date,
        &[
            ('Y', 365 * 86400 * SEC),
            ('M', 30 * 86400 * SEC),
            ('D', 86400 * SEC),
        ],
    )?;
    if let Some(time) = time {
        add(time, &[('H', 3600 * SEC), ('M', 60 * SEC), ('S', SEC)])?;
    }
    let micros = i64::try_from(micros).ok()?;
    Some(Duration::microseconds(micros))
}

/// .NET `TimeSpan.ToString()`: `[-][d.]hh:mm:ss[.fffffff]`.
pub fn format_timespan(d: Duration) -> String {
    let negative = d < Duration::zero();
    let d = if negative { -d } else { d };
    let total_secs = d.num_seconds();
    let ticks = (d - Duration::seconds(total_secs))
        .num_microseconds()
        .unwrap_or(0)
        * 10;
    let (days, rem) = (total_secs / 86400, total_secs % 86400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if days > 0 {
        out.push_str(&format!("{days}."));
    }
    out.push_str(&format!("{h:02}:{m:02}:{s:02}"));
    if ticks > 0 {
        out.push_str(&format!(".{ticks:07}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_durations_parse_like_xmlconvert() {
        assert_eq!(parse_iso8601("P30D"), Some(Duration::days(30)));
        assert_eq!(parse_iso8601("PT2H"), Some(Duration::hours(2)));
        assert_eq!(parse_iso8601("P1DT1H30M"), Some(Duration::minutes(1530)));
        assert_eq!(parse_iso8601("PT1.5S"), Some(Duration::milliseconds(1500)));
        assert_eq!(parse_iso8601("P1Y"), Some(Duration::days(365)));
        for bad in [
            "", "P", "PT", "30D", "P1H", "PT1D", "P1.5D", "nonsense", "P1D2",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }

    #[test]
    fn timespans_print_like_dotnet() {
        assert_eq!(format_timespan(Duration::days(30)), "30.00:00:00");
        assert_eq!(format_timespan(Duration::hours(2)), "02:00:00");
        assert_eq!(
            format_timespan(Duration::milliseconds(1500)),
            "00:00:01.5000000"
        );
    }
}
