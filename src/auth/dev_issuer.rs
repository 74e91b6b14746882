//! The development issuer: an ES256 signing key kept in the data dir (mode 0600), used by the server to
//! verify and by `broker token` to mint tokens. A stand-in for Maskinporten/Altinn tokens on one machine.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub struct DevIssuer {
    pub name: String,
    pub kid: String,
    encoding: EncodingKey,
    /// Base64url x and y of the P-256 public key.
    public: (String, String),
}

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("dev-issuer-key.pem")
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ascii"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

fn der_from_pem(text: &str) -> Result<Vec<u8>, String> {
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD
        .decode(body.trim())
        .map_err(|e| format!("bad PEM: {e}"))
}

impl DevIssuer {
    /// Loads the key, creating it (mode 0600) if the data dir has none yet.
    pub fn ensure(data_dir: &Path, name: &str) -> Result<DevIssuer, String> {
        let path = key_path(data_dir);
        if !path.exists() {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &SystemRandom::new(),
            )
            .map_err(|_| "cannot generate a signing key".to_string())?;
            // Written whole to a private temporary file, then linked into place: a crash never leaves a
            // truncated key, and of two processes racing, the first link wins and both use that key.
            let temp = path.with_extension(format!("tmp-{}", std::process::id()));
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&temp)?;
                f.write_all(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())?;
                f.sync_all()?;
                match std::fs::hard_link(&temp, &path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                std::fs::remove_file(&temp)?;
                std::fs::File::open(data_dir)?.sync_all()
            };
            write().map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Self::load(data_dir, name)
    }

    /// Loads an existing key (for `broker token`).
    pub fn load(data_dir: &Path, name: &str) -> Result<DevIssuer, String> {
        let path = key_path(data_dir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "{}: {e} (start `broker serve --data-dir {}` once to create it)",
                path.display(),
                data_dir.display()
            )
        })?;
        let der = der_from_pem(&text)?;
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &SystemRandom::new())
                .map_err(|_| format!("{}: not an ES256 PKCS#8 key", path.display()))?;
        let point = pair.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        );
        let kid = crate::util::sha256_hex(point)[..16].to_string();
        Ok(DevIssuer {
            name: name.to_string(),
            kid,
            encoding: EncodingKey::from_ec_der(&der),
            public: (x, y),
        })
    }

    pub fn decoding_key(&self) -> Result<DecodingKey, String> {
        DecodingKey::from_ec_components(&self.public.0, &self.public.1).map_err(|e| e.to_string())
    }

    /// Mints a token for `org` (`0192:NNNNNNNNN` or the bare number) with the given scopes.
    pub fn mint(&self, org: &str, scopes: &str, ttl: chrono::Duration) -> Result<String, String> {
        self.sign(self.claims(org, scopes, ttl))
    }

    /// Mints a system user's token: `vendor`'s system acting for `org` (Altinn's
    /// `authorization_details` of type `urn:altinn:systemuser`).
    pub fn mint_system_user(
        &self,
        vendor: &str,
        org: &str,
        scopes: &str,
        ttl: chrono::Duration,
    ) -> Result<String, String> {
        let digits = |o: &str| o.rsplit(':').next().unwrap_or(o).to_string();
        let mut claims = self.claims(vendor, scopes, ttl);
        claims["authorization_details"] = serde_json::json!([{
            "type": "urn:altinn:systemuser",
            "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{}", digits(org))},
        }]);
        self.sign(claims)
    }

    /// Mints a token whose JWS header carries `extra` beside `alg`, `typ` and `kid` (to test what
    /// the broker makes of header parameters a library would not write, such as `crit`).
    pub fn mint_with_header(
        &self,
        org: &str,
        scopes: &str,
        ttl: chrono::Duration,
        extra: serde_json::Value,
    ) -> Result<String, String> {
        let mut header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        if let (Some(header), serde_json::Value::Object(extra)) = (header.as_object_mut(), extra) {
            header.extend(extra);
        }
        let encode = |v: &serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let message = format!(
            "{}.{}",
            encode(&header),
            encode(&self.claims(org, scopes, ttl))
        );
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.encoding, Algorithm::ES256)
                .map_err(|e| e.to_string())?;
        Ok(format!("{message}.{signature}"))
    }

    fn claims(&self, org: &str, scopes: &str, ttl: chrono::Duration) -> serde_json::Value {
        let digits = org.rsplit(':').next().unwrap_or(org);
        let now = chrono::Utc::now().timestamp();
        serde_json::json!({
            "iss": self.name,
            "scope": scopes,
            "consumer": {"authority": "iso6523-actorid-upis", "ID": format!("0192:{digits}")},
            "urn:altinn:orgNumber": digits,
            "iat": now,
            "nbf": now,
            "exp": now + ttl.num_seconds(),
            "jti": uuid::Uuid::new_v4().to_string(),
        })
    }

    fn sign(&self, claims: serde_json::Value) -> Result<String, String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| e.to_string())
    }
}
