//! Bearer tokens: any text is refused or accepted without panicking, and never accepted without a
//! signature from the trusted key; any claims payload maps to a caller without panicking.
#![no_main]

use broker::auth::dev_issuer::DevIssuer;
use broker::auth::{caller_from_payload, Authenticator};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

/// An authenticator trusting one freshly made ES256 key (issuer `broker-dev`, as the seeds name).
fn authenticator() -> &'static Authenticator {
    static AUTH: OnceLock<Authenticator> = OnceLock::new();
    AUTH.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let dev = DevIssuer::ensure(dir.path(), "broker-dev").unwrap();
        let mut auth = Authenticator::new(0);
        auth.add_issuer_key(
            "broker-dev",
            Some(dev.kid.clone()),
            dev.decoding_key().unwrap(),
            jsonwebtoken::Algorithm::ES256,
        );
        auth
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().unwrap())
}

fuzz_target!(|input: &[u8]| {
    let _ = caller_from_payload(input);
    let Ok(token) = std::str::from_utf8(input) else {
        return;
    };
    let accepted = runtime().block_on(authenticator().authenticate(token));
    // The key was made in this process: no input can carry its signature.
    assert!(accepted.is_err(), "accepted {token:?}");
});
