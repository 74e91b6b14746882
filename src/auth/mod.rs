//! Bearer-token authentication: JWT validation (RS256, ES256) against configured issuers, and the
//! caller identity Altinn derives from the claims (spec 0.3).

pub mod dev_issuer;

use crate::config::IssuerConfig;
use base64::Engine;
use broker_protocol::transfer::parse_org;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

mod cache;
mod jws;
use std::time::{Duration, Instant};

pub use broker_actors::Caller;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
}

struct VerificationKey {
    kid: Option<String>,
    key: DecodingKey,
    algorithm: Algorithm,
}

struct Issuer {
    keys: RwLock<Vec<VerificationKey>>,
    jwks_url: Option<String>,
    last_fetch: RwLock<Option<Instant>>,
    /// Counts replacements of `keys`: a cached verification made under other keys no longer holds.
    generation: AtomicU64,
}

impl Issuer {
    fn new(keys: Vec<VerificationKey>, jwks_url: Option<String>) -> Issuer {
        Issuer {
            keys: RwLock::new(keys),
            jwks_url,
            last_fetch: RwLock::new(None), // the first unknown kid may refetch at once
            generation: AtomicU64::new(0),
        }
    }

    fn replace_keys(&self, keys: Vec<VerificationKey>) {
        *self.keys.write().expect("issuer keys") = keys;
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
}

pub struct Authenticator {
    issuers: HashMap<String, Issuer>,
    leeway: u64,
    http: reqwest::Client,
    /// Tokens whose signature was verified, so a client's next requests skip the signature check.
    verified: cache::VerifiedTokens,
}

#[derive(Deserialize)]
struct Consumer {
    #[serde(rename = "ID", alias = "id")]
    id: Option<String>,
}

#[derive(Deserialize)]
struct SystemUserOrg {
    #[serde(rename = "ID", alias = "id")]
    id: Option<String>,
}

#[derive(Deserialize)]
struct AuthorizationDetail {
    #[serde(rename = "type")]
    type_: Option<String>,
    systemuser_org: Option<SystemUserOrg>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    /// Seconds since the epoch (validated by jsonwebtoken; kept to bound the cached verification).
    exp: Option<f64>,
    scope: Option<String>,
    consumer: Option<Consumer>,
    #[serde(rename = "urn:altinn:orgNumber")]
    org_number: Option<String>,
    authorization_details: Option<serde_json::Value>,
}

fn caller_from(claims: Claims) -> Caller {
    let system_user_org = claims.authorization_details.and_then(|v| {
        let details: Vec<AuthorizationDetail> = match v {
            serde_json::Value::Array(_) => serde_json::from_value(v).ok()?,
            other => vec![serde_json::from_value(other).ok()?],
        };
        details
            .into_iter()
            .find(|d| d.type_.as_deref() == Some("urn:altinn:systemuser"))
            .and_then(|d| d.systemuser_org?.id)
    });
    let consumer = claims.consumer.as_ref().and_then(|c| c.id.clone());
    // A system user's token is the vendor's (its consumer) acting for the customer's organisation.
    let vendor = system_user_org
        .as_ref()
        .and(consumer.as_deref())
        .and_then(parse_org);
    let org = system_user_org
        .as_deref()
        .and_then(parse_org)
        .or_else(|| claims.org_number.as_deref().and_then(parse_org))
        .or_else(|| consumer.as_deref().and_then(parse_org));
    Caller {
        org,
        scopes: claims
            .scope
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        vendor,
    }
}

/// The caller a token's payload (its claims, as JSON) describes, without any verification: what
/// [`Authenticator::authenticate`] returns once the signature, issuer and lifetime hold. Public for
/// the fuzzer.
pub fn caller_from_payload(payload: &[u8]) -> Result<Caller, AuthError> {
    serde_json::from_slice(payload)
        .map(caller_from)
        .map_err(|e| AuthError::Malformed(e.to_string()))
}

fn key_from_pem(pem: &[u8]) -> Result<(DecodingKey, Algorithm), String> {
    if let Ok(k) = DecodingKey::from_ec_pem(pem) {
        return Ok((k, Algorithm::ES256));
    }
    DecodingKey::from_rsa_pem(pem)
        .map(|k| (k, Algorithm::RS256))
        .map_err(|e| format!("not an EC P-256 or RSA public key: {e}"))
}

fn keys_from_jwks(set: &JwkSet) -> Vec<VerificationKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let algorithm = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => return None,
            };
            Some(VerificationKey {
                kid: jwk.common.key_id.clone(),
                key: DecodingKey::from_jwk(jwk).ok()?,
                algorithm,
            })
        })
        .collect()
}

impl Authenticator {
    pub fn new(leeway: u64) -> Self {
        Authenticator {
            issuers: HashMap::new(),
            leeway,
            http: reqwest::Client::new(),
            verified: Default::default(),
        }
    }

    /// Trusts `issuer` with the keys of a PEM public key.
    pub fn add_pem_issuer(
        &mut self,
        issuer: &str,
        kid: Option<String>,
        pem: &[u8],
    ) -> Result<(), String> {
        let (key, algorithm) = key_from_pem(pem)?;
        self.add_issuer_key(issuer, kid, key, algorithm);
        Ok(())
    }

    /// Trusts `issuer` with one verification key.
    pub fn add_issuer_key(
        &mut self,
        issuer: &str,
        kid: Option<String>,
        key: DecodingKey,
        algorithm: Algorithm,
    ) {
        let key = VerificationKey {
            kid,
            key,
            algorithm,
        };
        self.issuers
            .insert(issuer.to_string(), Issuer::new(vec![key], None));
    }

    pub async fn add_configured(&mut self, config: &IssuerConfig) -> Result<(), String> {
        if let Some(path) = &config.public_key_file {
            let shown = path.display();
            let pem = std::fs::read(path).map_err(|e| format!("public_key_file {shown}: {e}"))?;
            return self
                .add_pem_issuer(&config.issuer, None, &pem)
                .map_err(|e| format!("public_key_file {shown}: {e}"));
        }
        let (keys, url) = if let Some(path) = &config.jwks_file {
            let shown = path.display();
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("jwks_file {shown}: {e}"))?;
            let set: JwkSet =
                serde_json::from_str(&text).map_err(|e| format!("jwks_file {shown}: {e}"))?;
            (keys_from_jwks(&set), None)
        } else if let Some(url) = &config.jwks_url {
            (
                self.fetch_jwks(url)
                    .await
                    .map_err(|e| format!("jwks_url {url}: {e}"))?,
                Some(url.clone()),
            )
        } else {
            return Err(format!("issuer {} has no key source", config.issuer));
        };
        self.issuers
            .insert(config.issuer.clone(), Issuer::new(keys, url));
        Ok(())
    }

    async fn fetch_jwks(&self, url: &str) -> Result<Vec<VerificationKey>, String> {
        let set: JwkSet = self
            .http
            .get(url)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("JWKS {url}: {e}"))?
            .json()
            .await
            .map_err(|e| format!("JWKS {url}: {e}"))?;
        Ok(keys_from_jwks(&set))
    }

    /// Validates signature, issuer and lifetime, and returns the caller the claims describe.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify(token, 0).await
    }

    /// Like [`authenticate`](Self::authenticate) but accepts a token up to `grace` past its expiry
    /// (signature, issuer and not-before still checked): only for requests on an upload session
    /// that is still active (spec 4.6), so a multi-hour upload outlives its ~1 h token, but a token
    /// expired longer ago than an upload may sit untouched is refused.
    pub async fn authenticate_expired_within(
        &self,
        token: &str,
        grace: Duration,
    ) -> Result<Caller, AuthError> {
        self.verify(token, grace.as_secs()).await
    }

    /// `grace`: seconds past `exp` (beyond the leeway) the token is still accepted.
    async fn verify(&self, token: &str, grace: u64) -> Result<Caller, AuthError> {
        let generation_of = |iss: &str| {
            self.issuers
                .get(iss)
                .map(|i| i.generation.load(Ordering::SeqCst))
        };
        let allowed_past_exp = self.leeway + grace;
        // A client's next requests send the string that was verified: found as it is. Only a
        // token not seen yet is read further (a twin of a verified one is found by its canonical
        // form), and only what was verified in full is ever remembered.
        let sent = cache::TokenKey::of(token);
        if let Some(caller) = self.verified.get(&sent, allowed_past_exp, generation_of) {
            return Ok(caller);
        }
        let token = jws::canonical(token)?;
        let token = token.as_ref();
        let key = cache::TokenKey::of(token);
        if key != sent {
            if let Some(caller) = self.verified.get(&key, allowed_past_exp, generation_of) {
                return Ok(caller);
            }
        }
        self.verified.count_miss();
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Algorithm);
        }
        let payload = token
            .split('.')
            .nth(1)
            .ok_or_else(|| AuthError::Malformed("no payload".into()))?;
        let unverified: Claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| AuthError::Malformed("unreadable claims".into()))?;
        let iss = unverified.iss.ok_or(AuthError::UnknownIssuer)?;
        let issuer = self.issuers.get(&iss).ok_or(AuthError::UnknownIssuer)?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&iss]);
        validation.validate_aud = false;
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        // Expiry is checked below, with the grace (the leeway also widens not-before).
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        for attempt in 0..2 {
            let verified = {
                let keys = issuer.keys.read().expect("issuer keys");
                let candidates = keys.iter().filter(|k| {
                    k.algorithm == header.alg
                        && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
                });
                let mut outcome = Err(AuthError::UnknownKey);
                for key in candidates {
                    match jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                        Ok(data) => {
                            outcome = match data.claims.exp {
                                Some(exp) if cache::expired(exp as i64, allowed_past_exp) => {
                                    Err(AuthError::Expired)
                                }
                                Some(_) => Ok(data.claims),
                                None => Err(AuthError::Invalid("the token has no exp".into())),
                            };
                            break;
                        }
                        Err(e) => outcome = Err(AuthError::Invalid(e.to_string())),
                    }
                }
                outcome
            };
            match verified {
                Ok(claims) => {
                    let generation = issuer.generation.load(Ordering::SeqCst);
                    let exp = claims.exp.map(|e| e as i64);
                    let caller = caller_from(claims);
                    self.verified
                        .insert(key, &iss, generation, exp, caller.clone());
                    return Ok(caller);
                }
                // An unknown kid may mean the issuer rotated its keys: refetch its JWKS once.
                Err(AuthError::UnknownKey) if attempt == 0 && self.may_refetch(issuer) => {
                    if let Some(url) = &issuer.jwks_url {
                        if let Ok(keys) = self.fetch_jwks(url).await {
                            issuer.replace_keys(keys);
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Err(AuthError::UnknownKey)
    }

    /// How many tokens were fully verified (signature included): a cached token's next requests are not.
    pub fn full_verifications(&self) -> u64 {
        self.verified.misses()
    }

    fn may_refetch(&self, issuer: &Issuer) -> bool {
        if issuer.jwks_url.is_none() {
            return false;
        }
        let mut last = issuer.last_fetch.write().expect("fetch time");
        let due = last.is_none_or(|t| t.elapsed() > Duration::from_secs(10));
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

#[cfg(test)]
mod tests;
