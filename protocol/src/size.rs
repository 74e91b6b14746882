//! Byte sizes on the command line (`1048576`, `512k`, `8MiB`, `10MB`, `1.5GiB`) and the split of a
//! file into ranges for parallel streams.

/// Parses a size: binary units for `k`/`KiB`/`M`/`MiB`/`G`/`GiB`/`T`/`TiB`, decimal ones for
/// `KB`/`MB`/`GB`/`TB` (case does not matter).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1048576, 512KiB, 8MiB, 10MB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "kb" => 1_000,
        "m" | "mib" => 1 << 20,
        "mb" => 1_000_000,
        "g" | "gib" => 1 << 30,
        "gb" => 1_000_000_000,
        "t" | "tib" => 1 << 40,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown size unit {other:?} in {text:?}")),
    };
    let bytes = number * multiplier as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(bytes.round() as u64)
}

/// A positive size (chunk sizes, rates).
pub fn parse_positive_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err(format!("{text:?} must be more than zero")),
        n => Ok(n),
    }
}

/// `12.0 MiB`-style text for people.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Splits `size` bytes into at most `count` contiguous ranges of (nearly) equal length, none empty.
pub fn split_ranges(size: u64, count: u64) -> Vec<(u64, u64)> {
    let count = count.clamp(1, size.max(1));
    let each = size.div_ceil(count).max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < size {
        let len = each.min(size - start);
        ranges.push((start, len));
        start += len;
    }
    if ranges.is_empty() {
        ranges.push((0, 0));
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("8m"), Ok(8 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("5 parsecs").is_err());
        assert!(parse_positive_size("0").is_err());
    }

    #[test]
    fn ranges_cover_the_file_without_gaps_or_empty_parts() {
        assert_eq!(split_ranges(10, 4), vec![(0, 3), (3, 3), (6, 3), (9, 1)]);
        assert_eq!(split_ranges(2, 4), vec![(0, 1), (1, 1)]);
        assert_eq!(split_ranges(0, 4), vec![(0, 0)]);
        assert_eq!(split_ranges(100, 1), vec![(0, 100)]);
    }

    #[test]
    fn human_sizes_pick_the_largest_whole_unit() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(3 << 20), "3.0 MiB");
    }
}
