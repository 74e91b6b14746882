//! The authenticator: caller identity from claims, the verification cache, expiry and its grace on
//! uploads, and the JWS rules (critical headers, ES256 normalisation).

use super::*;

#[test]
fn the_system_user_org_wins_over_org_number_and_consumer() {
    let claims: Claims = serde_json::from_value(serde_json::json!({
        "scope": "altinn:broker.write altinn:broker.read",
        "consumer": {"authority": "iso6523-actorid-upis", "ID": "0192:111111111"},
        "urn:altinn:orgNumber": "222222222",
        "authorization_details": [{"type": "urn:altinn:systemuser",
            "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": "0192:333333333"}}]
    }))
    .unwrap();
    let caller = caller_from(claims);
    assert_eq!(caller.org.as_deref(), Some("0192:333333333"));
    assert_eq!(caller.vendor.as_deref(), Some("0192:111111111"));
    assert!(caller.has_scope("altinn:broker.read"));
}

#[test]
fn without_system_user_the_org_number_then_the_consumer_is_used() {
    let claims: Claims = serde_json::from_value(serde_json::json!({
        "consumer": {"authority": "iso6523-actorid-upis", "ID": "0192:111111111"}
    }))
    .unwrap();
    let caller = caller_from(claims);
    assert_eq!(caller.org.as_deref(), Some("0192:111111111"));
    assert_eq!(
        caller.vendor, None,
        "an organisation's own token has no vendor"
    );
}

fn issuer_in(dir: &std::path::Path) -> (Authenticator, dev_issuer::DevIssuer) {
    let dev = dev_issuer::DevIssuer::ensure(dir, "test-issuer").unwrap();
    let mut auth = Authenticator::new(0);
    auth.add_issuer_key(
        &dev.name,
        Some(dev.kid.clone()),
        dev.decoding_key().unwrap(),
        Algorithm::ES256,
    );
    (auth, dev)
}

/// A read token for `org` from `dev`, valid for `ttl` (negative: expired that long ago).
fn mint(dev: &dev_issuer::DevIssuer, org: &str, ttl: chrono::Duration) -> String {
    dev.mint(org, "altinn:broker.read", ttl).unwrap()
}

#[tokio::test]
async fn a_token_is_verified_once_and_its_later_requests_skip_the_signature_check() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, dev) = issuer_in(dir.path());
    let token = mint(&dev, "0192:111111111", chrono::Duration::hours(1));
    for _ in 0..5 {
        let caller = auth.authenticate(&token).await.unwrap();
        assert_eq!(caller.org.as_deref(), Some("0192:111111111"));
    }
    assert_eq!(auth.full_verifications(), 1);
    let other = mint(&dev, "0192:222222222", chrono::Duration::hours(1));
    assert_eq!(
        auth.authenticate(&other).await.unwrap().org.as_deref(),
        Some("0192:222222222")
    );
    assert_eq!(
        auth.full_verifications(),
        2,
        "another token is verified on its own"
    );
}

#[tokio::test]
async fn a_cached_token_is_still_refused_once_expired_and_a_forged_one_never_hits_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, dev) = issuer_in(dir.path());
    let expired = mint(&dev, "0192:111111111", chrono::Duration::seconds(-60));
    // Verified (signature and all) on a path that accepts an expired token, so it is cached ...
    let grace = Duration::from_secs(3600);
    auth.authenticate_expired_within(&expired, grace)
        .await
        .unwrap();
    auth.authenticate_expired_within(&expired, grace)
        .await
        .unwrap();
    assert_eq!(auth.full_verifications(), 1);
    // ... and still refused where expiry counts.
    assert!(matches!(
        auth.authenticate(&expired).await,
        Err(AuthError::Expired)
    ));
    let good = mint(&dev, "0192:111111111", chrono::Duration::hours(1));
    auth.authenticate(&good).await.unwrap();
    let mut forged = good.clone();
    forged.pop();
    forged.push(if good.ends_with('A') { 'B' } else { 'A' });
    assert!(auth.authenticate(&forged).await.is_err());
    assert!(
        auth.authenticate(&forged).await.is_err(),
        "a failed check is not remembered"
    );
}

#[tokio::test]
async fn new_issuer_keys_make_every_cached_token_verify_again() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, dev) = issuer_in(dir.path());
    let token = mint(&dev, "0192:111111111", chrono::Duration::hours(1));
    auth.authenticate(&token).await.unwrap();
    let issuer = auth.issuers.get(&dev.name).unwrap();
    // The issuer rotated to a key that did not sign the token.
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger = dev_issuer::DevIssuer::ensure(stranger_dir.path(), "x").unwrap();
    issuer.replace_keys(vec![VerificationKey {
        kid: Some(dev.kid.clone()),
        key: stranger.decoding_key().unwrap(),
        algorithm: Algorithm::ES256,
    }]);
    assert!(
        auth.authenticate(&token).await.is_err(),
        "the old verification no longer counts"
    );
}

#[tokio::test]
async fn an_expired_token_is_accepted_on_an_upload_only_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, dev) = issuer_in(dir.path());
    let grace = Duration::from_secs(24 * 3600);
    let recent = mint(&dev, "0192:111111111", chrono::Duration::minutes(-5));
    assert!(auth
        .authenticate_expired_within(&recent, grace)
        .await
        .is_ok());
    let year_old = mint(&dev, "0192:111111111", chrono::Duration::days(-365));
    assert!(matches!(
        auth.authenticate_expired_within(&year_old, grace).await,
        Err(AuthError::Expired)
    ));
    // Nor does a cached verification outlive the grace.
    let two_days = mint(&dev, "0192:111111111", chrono::Duration::days(-2));
    auth.authenticate_expired_within(&two_days, Duration::from_secs(3 * 86_400))
        .await
        .unwrap();
    assert!(matches!(
        auth.authenticate_expired_within(&two_days, grace).await,
        Err(AuthError::Expired)
    ));
}

#[tokio::test]
async fn an_es256_token_and_its_high_s_twin_are_one_token() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, dev) = issuer_in(dir.path());
    let token = mint(&dev, "0192:111111111", chrono::Duration::hours(1));
    let twin = jws::twin(&token);
    assert_ne!(token, twin);
    for t in [&token, &twin, &token, &twin] {
        let caller = auth.authenticate(t).await.unwrap();
        assert_eq!(caller.org.as_deref(), Some("0192:111111111"));
    }
    assert_eq!(
        auth.full_verifications(),
        1,
        "both forms are normalised to one (low-S) token before verification and caching"
    );
    let mut forged = twin.clone();
    forged.insert(
        forged.len() - 5,
        if twin.ends_with("AAAAA") { 'B' } else { 'A' },
    );
    assert!(auth.authenticate(&forged).await.is_err());
}

#[tokio::test]
async fn a_signed_token_with_a_critical_header_extension_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (auth, dev) = issuer_in(dir.path());
    let token = dev
        .mint_with_header(
            "0192:111111111",
            "altinn:broker.read",
            chrono::Duration::hours(1),
            serde_json::json!({"crit": ["urn:example:unknown"], "urn:example:unknown": true}),
        )
        .unwrap();
    assert!(matches!(
        auth.authenticate(&token).await,
        Err(AuthError::Invalid(_))
    ));
    let plain = mint(&dev, "0192:111111111", chrono::Duration::hours(1));
    assert!(
        auth.authenticate(&plain).await.is_ok(),
        "the positive control"
    );
}
