//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): the signed content is
//! `{webhook-id}.{webhook-timestamp}.{body}`, the signature `v1,` + base64 of its HMAC-SHA256 under the
//! secret's bytes (the secret is `whsec_` + base64 of 32 random bytes).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};

/// The prefix of a webhook signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A secret made of `key` (32 random bytes, drawn by the caller).
pub fn secret_from_key(key: &[u8; 32]) -> String {
    format!("{SECRET_PREFIX}{}", STANDARD.encode(key))
}

/// The key bytes of a `whsec_` secret; `None` when it is not one.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .ok()
}

/// The `v1,<base64>` signature of one attempt.
pub fn sign(key: &[u8], webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(webhook_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Whether `header` (space-separated signatures, as `webhook-signature` carries them) holds a valid
/// signature of the content under `key`.
pub fn verify(key: &[u8], webhook_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let expected = sign(key, webhook_id, timestamp, body);
    header.split(' ').any(|s| s == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_matches_the_standard_webhooks_reference_example() {
        // The example of the Standard Webhooks specification's reference libraries.
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn verification_accepts_any_of_several_signatures_and_refuses_a_changed_body() {
        let key = [7u8; 32];
        let good = sign(&key, "id", 10, b"body");
        let header = format!("v1,AAAA {good}");
        assert!(verify(&key, "id", 10, b"body", &header));
        assert!(!verify(&key, "id", 10, b"bodY", &header));
        assert!(!verify(&key, "id", 11, b"body", &header));
    }

    #[test]
    fn a_secret_round_trips_its_key() {
        let key = [42u8; 32];
        let secret = secret_from_key(&key);
        assert!(secret.starts_with("whsec_"));
        assert_eq!(secret_key(&secret).unwrap(), key.to_vec());
    }
}
