//! The HTTP Range grammar Broker honours: one `bytes` range, in any case. Anything else is ignored
//! (the full file is served), as Altinn's `ByteRangeParser` does.

/// A syntactically valid single byte range, not yet resolved against a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `a-b`, with `b >= a`.
    FromTo(u64, u64),
    /// `a-`.
    From(u64),
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// The range could not be served for this size: 416 `BRO-00029`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsatisfiable;

impl ByteRange {
    /// Parses a `Range` header value; `None` means "ignore the header and serve the whole file".
    pub fn parse(header: &str) -> Option<ByteRange> {
        let header = header.trim();
        let (unit, spec) = header.split_once('=')?;
        if !unit.trim().eq_ignore_ascii_case("bytes") {
            return None;
        }
        let spec = spec.trim();
        if spec.contains(',') {
            return None;
        }
        let (first, last) = spec.split_once('-')?;
        let (first, last) = (first.trim(), last.trim());
        // Altinn parses positions as a .NET `long`: a number past i64::MAX is unparsable, so ignored.
        let number = |s: &str| -> Option<u64> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<i64>().ok().map(|n| n as u64)
        };
        match (first.is_empty(), last.is_empty()) {
            (true, true) => None,
            (true, false) => number(last).map(ByteRange::Suffix),
            (false, true) => number(first).map(ByteRange::From),
            (false, false) => {
                let (a, b) = (number(first)?, number(last)?);
                (b >= a).then_some(ByteRange::FromTo(a, b))
            }
        }
    }

    /// Resolves the range against a file of `size` bytes: the inclusive `(start, end)` to serve.
    pub fn resolve(self, size: u64) -> Result<(u64, u64), Unsatisfiable> {
        if size == 0 {
            return Err(Unsatisfiable);
        }
        match self {
            ByteRange::FromTo(a, b) if a < size => Ok((a, b.min(size - 1))),
            ByteRange::From(a) if a < size => Ok((a, size - 1)),
            ByteRange::Suffix(n) if n > 0 => Ok((size - n.min(size), size - 1)),
            _ => Err(Unsatisfiable),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_forms_of_spec_section_5_parse() {
        assert_eq!(ByteRange::parse("bytes=0-9"), Some(ByteRange::FromTo(0, 9)));
        assert_eq!(ByteRange::parse("BYTES=0-9"), Some(ByteRange::FromTo(0, 9)));
        assert_eq!(ByteRange::parse("bytes=5-"), Some(ByteRange::From(5)));
        assert_eq!(ByteRange::parse("bytes=-5"), Some(ByteRange::Suffix(5)));
        assert_eq!(
            ByteRange::parse("bytes=9223372036854775807-"),
            Some(ByteRange::From(i64::MAX as u64))
        );
    }

    #[test]
    fn malformed_or_multiple_ranges_are_ignored() {
        for h in [
            "",
            "bytes=",
            "bytes=abc",
            "bytes=9-2",
            "bytes=0-1,5-10",
            "items=0-1",
            "bytes=-",
            "bytes=1-x",
            "bytes=9223372036854775808-",
            "bytes=18446744073709551615-",
            "bytes=0-99999999999999999999",
        ] {
            assert_eq!(ByteRange::parse(h), None, "{h}");
        }
    }

    #[test]
    fn resolution_clamps_and_rejects_as_the_spec_says() {
        assert_eq!(ByteRange::FromTo(0, 99).resolve(10), Ok((0, 9)));
        assert_eq!(ByteRange::From(3).resolve(10), Ok((3, 9)));
        assert_eq!(ByteRange::Suffix(4).resolve(10), Ok((6, 9)));
        assert_eq!(ByteRange::Suffix(40).resolve(10), Ok((0, 9)));
        assert_eq!(ByteRange::From(10).resolve(10), Err(Unsatisfiable));
        assert_eq!(ByteRange::Suffix(0).resolve(10), Err(Unsatisfiable));
        assert_eq!(ByteRange::FromTo(0, 0).resolve(0), Err(Unsatisfiable));
    }

    proptest! {
        #[test]
        fn a_resolved_range_always_lies_inside_the_file(a in 0u64..1000, b in 0u64..1000, size in 0u64..1000) {
            for r in [ByteRange::FromTo(a, a + b), ByteRange::From(a), ByteRange::Suffix(b)] {
                if let Ok((s, e)) = r.resolve(size) {
                    prop_assert!(s <= e && e < size);
                }
            }
        }

        #[test]
        fn any_header_text_parses_without_panicking(s in ".*") {
            let _ = ByteRange::parse(&s);
        }
    }
}
