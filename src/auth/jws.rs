//! What the JWS layer must refuse or canonicalise before a token's signature is checked: a header
//! with critical extensions (RFC 7515 4.1.11: a recipient that does not understand them must refuse
//! the token, and Broker understands none), and the second form of every ECDSA signature.
//!
//! An ECDSA signature `(r, s)` is equally valid as `(r, n - s)`, so every ES256 token has a twin
//! string that verifies the same. Broker normalises: the high-S twin is rewritten to its low-S form
//! before anything else looks at it, so both strings are one token to the verification cache, the
//! logs and any future replay or revocation list. Refusing high-S instead would refuse about half of
//! the tokens that standard signers (which do not normalise) issue.

use super::AuthError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::borrow::Cow;

/// The order of the P-256 group, big-endian.
const P256_ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];

/// `P256_ORDER / 2`, the largest low S.
const P256_HALF_ORDER: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// `a - b` for big-endian 256-bit numbers with `a >= b`.
fn subtract(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let mut d = a[i] as i16 - b[i] as i16 - borrow;
        borrow = i16::from(d < 0);
        if d < 0 {
            d += 256;
        }
        out[i] = d as u8;
    }
    out
}

/// The token as Broker verifies and remembers it: its header checked for critical extensions, and an
/// ES256 signature in its low-S form.
pub(super) fn canonical(token: &str) -> Result<Cow<'_, str>, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("a JWS has three parts".into()));
    };
    let header_json: serde_json::Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| AuthError::Malformed("unreadable header".into()))?;
    if header_json.get("crit").is_some() {
        return Err(AuthError::Invalid(
            "the header names critical extensions this broker does not understand".into(),
        ));
    }
    if header_json.get("alg").and_then(|a| a.as_str()) != Some("ES256") {
        return Ok(Cow::Borrowed(token));
    }
    let Ok(raw) = URL_SAFE_NO_PAD.decode(signature) else {
        // Left to the verifier, which refuses it.
        return Ok(Cow::Borrowed(token));
    };
    let Some(s) = raw.get(32..64).filter(|_| raw.len() == 64) else {
        return Ok(Cow::Borrowed(token));
    };
    if s <= &P256_HALF_ORDER[..] || s >= &P256_ORDER[..] {
        return Ok(Cow::Borrowed(token));
    }
    let mut low = raw[..32].to_vec();
    low.extend_from_slice(&subtract(&P256_ORDER, s));
    Ok(Cow::Owned(format!(
        "{header}.{payload}.{}",
        URL_SAFE_NO_PAD.encode(low)
    )))
}

/// The token with its ES256 signature's S replaced by `n - S` (the twin form), for tests.
#[cfg(test)]
pub(super) fn twin(token: &str) -> String {
    let (head, signature) = token.rsplit_once('.').unwrap();
    let raw = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let mut out = raw[..32].to_vec();
    out.extend_from_slice(&subtract(&P256_ORDER, &raw[32..]));
    format!("{head}.{}", URL_SAFE_NO_PAD.encode(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_the_order_is_the_order_shifted_right_by_one() {
        let mut doubled = [0u8; 32];
        let mut carry = 0u16;
        for i in (0..32).rev() {
            let v = P256_HALF_ORDER[i] as u16 * 2 + carry;
            doubled[i] = v as u8;
            carry = v >> 8;
        }
        // n is odd: 2 * (n / 2) + 1 = n
        doubled[31] += 1;
        assert_eq!(doubled, P256_ORDER);
    }

    #[test]
    fn a_header_with_critical_extensions_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","crit":["exp"],"exp":1}"#);
        let token = format!("{header}.e30.AAAA");
        assert!(matches!(canonical(&token), Err(AuthError::Invalid(_))));
    }
}
