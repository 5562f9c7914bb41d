//! The tests' identity provider: signing keys of each algorithm the service accepts (RS256
//! from fixtures, ES256 and EdDSA made per provider), a JWKS file the server reads, and
//! tokens signed with `jsonwebtoken`, an implementation independent of the server's.
//!
//! Tokens are issued at the servers' clock (the test clock file), so they stay valid as a
//! test moves time forward: by default they expire ten years after they were issued.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use coachflow_store::testing::TempDirGuard;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{self, KeyPair as _};
use serde_json::{Map, Value, json};

/// The issuer and audience the test servers trust.
pub const ISSUER: &str = "https://idp.test.coachflow.dev";
pub const AUDIENCE: &str = "coachflow-tests";

/// The scopes of the L&D system the tests drive engagements as.
pub const SYSTEM_SCOPES: [&str; 4] = ["models:write", "engagements:write", "engagements:read", "events:read"];

/// One signing key and its public half.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/keys")
        .join(name)
}

/// Which kind of key to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RS256 with fixture key `n` (1 or 2).
    Rsa(u8),
    Es256,
    EdDsa,
}

impl SigningKey {
    fn new(kind: KeyKind, kid: &str) -> SigningKey {
        let random = ring::rand::SystemRandom::new();
        let (algorithm, encoding, mut jwk) = match kind {
            KeyKind::Rsa(n) => {
                let pem = std::fs::read(fixture(&format!("rsa-{n}.pem"))).expect("the RSA fixture");
                let jwk: Value =
                    serde_json::from_slice(&std::fs::read(fixture(&format!("rsa-{n}.jwk.json"))).expect("its JWK"))
                        .expect("a JWK");
                (
                    Algorithm::RS256,
                    EncodingKey::from_rsa_pem(&pem).expect("an RSA key"),
                    jwk,
                )
            }
            KeyKind::Es256 => {
                let document =
                    signature::EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &random)
                        .expect("a P-256 key");
                let pair = signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    document.as_ref(),
                    &random,
                )
                .expect("the P-256 key");
                let point = pair.public_key().as_ref();
                (
                    Algorithm::ES256,
                    EncodingKey::from_ec_der(document.as_ref()),
                    json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                           "x": base64url(&point[1..33]), "y": base64url(&point[33..65])}),
                )
            }
            KeyKind::EdDsa => {
                let document = signature::Ed25519KeyPair::generate_pkcs8(&random).expect("an Ed25519 key");
                let pair = signature::Ed25519KeyPair::from_pkcs8(document.as_ref()).expect("the Ed25519 key");
                (
                    Algorithm::EdDSA,
                    EncodingKey::from_ed_der(document.as_ref()),
                    json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                           "x": base64url(pair.public_key().as_ref())}),
                )
            }
        };
        jwk["kid"] = Value::from(kid);
        SigningKey {
            kid: kid.to_owned(),
            algorithm,
            encoding,
            jwk,
        }
    }
}

/// What a token says; [`Claims::person`] and [`Claims::system`] make the usual ones, and
/// the fields can be changed to make bad ones.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub subject: String,
    pub tenant: Option<String>,
    pub scopes: Vec<String>,
    /// `act.sub`: the system acting for the subject.
    pub acting: Option<String>,
    pub issuer: String,
    pub audience: Value,
    /// Seconds from the clock's now; `None` leaves the claim out.
    pub expires_in: Option<i64>,
    pub not_before_in: Option<i64>,
    /// Extra claims, e.g. another tenant claim name.
    pub extra: Map<String, Value>,
}

/// Ten years: tokens outlive any time a test moves through.
const LONG: i64 = 10 * 365 * 86_400;

impl Claims {
    /// A person of `tenant`, with no system powers.
    pub fn person(subject: &str, tenant: &str) -> Claims {
        Claims {
            subject: subject.to_owned(),
            tenant: Some(tenant.to_owned()),
            scopes: Vec::new(),
            acting: None,
            issuer: ISSUER.to_owned(),
            audience: Value::from(AUDIENCE),
            expires_in: Some(LONG),
            not_before_in: None,
            extra: Map::new(),
        }
    }

    /// A system of `tenant` with `scopes`.
    pub fn system(subject: &str, tenant: &str, scopes: &[&str]) -> Claims {
        Claims {
            scopes: scopes.iter().map(|scope| (*scope).to_owned()).collect(),
            ..Claims::person(subject, tenant)
        }
    }

    fn payload(&self, now: DateTime<Utc>) -> Value {
        let mut claims = Map::new();
        claims.insert("iss".to_owned(), Value::from(self.issuer.as_str()));
        claims.insert("aud".to_owned(), self.audience.clone());
        claims.insert("sub".to_owned(), Value::from(self.subject.as_str()));
        claims.insert("iat".to_owned(), Value::from(now.timestamp()));
        if let Some(tenant) = &self.tenant {
            claims.insert("tenant".to_owned(), Value::from(tenant.as_str()));
        }
        if !self.scopes.is_empty() {
            claims.insert("scope".to_owned(), Value::from(self.scopes.join(" ")));
        }
        if let Some(acting) = &self.acting {
            claims.insert("act".to_owned(), json!({ "sub": acting }));
        }
        if let Some(seconds) = self.expires_in {
            claims.insert("exp".to_owned(), Value::from(now.timestamp() + seconds));
        }
        if let Some(seconds) = self.not_before_in {
            claims.insert("nbf".to_owned(), Value::from(now.timestamp() + seconds));
        }
        claims.extend(self.extra.clone());
        Value::Object(claims)
    }
}

/// The identity provider of one or more test servers.
#[derive(Debug)]
pub struct TestIssuer {
    jwks: PathBuf,
    keys: Mutex<Vec<SigningKey>>,
    /// Keys taken out of the JWKS, still able to sign (a token of a removed key).
    retired: Mutex<BTreeMap<String, SigningKey>>,
    _dir: TempDirGuard,
}

impl TestIssuer {
    /// An issuer with one key of each algorithm (EdDSA first: the default signer, the
    /// cheapest), its JWKS written.
    pub fn new() -> Arc<TestIssuer> {
        let dir = TempDirGuard::new();
        let issuer = TestIssuer {
            jwks: dir.path().join("jwks.json"),
            keys: Mutex::new(vec![
                SigningKey::new(KeyKind::EdDsa, "ed-1"),
                SigningKey::new(KeyKind::Rsa(1), "rsa-1"),
                SigningKey::new(KeyKind::Es256, "ec-1"),
            ]),
            retired: Mutex::new(BTreeMap::new()),
            _dir: dir,
        };
        issuer.write_jwks();
        Arc::new(issuer)
    }

    /// The JWKS file.
    pub fn jwks_path(&self) -> &Path {
        &self.jwks
    }

    /// The server settings that trust this issuer.
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("auth.issuer".to_owned(), ISSUER.to_owned()),
            ("auth.audience".to_owned(), AUDIENCE.to_owned()),
            ("auth.jwks".to_owned(), format!("file://{}", self.jwks.display())),
        ]
    }

    /// The key ids in the JWKS, in order.
    pub fn kids(&self) -> Vec<String> {
        self.lock().iter().map(|key| key.kid.clone()).collect()
    }

    /// Adds a key to the JWKS (rotation).
    pub fn add_key(&self, kind: KeyKind, kid: &str) {
        self.lock().push(SigningKey::new(kind, kid));
        self.write_jwks();
    }

    /// Takes a key out of the JWKS; it can still sign, as a leaked or retired key would.
    pub fn remove_key(&self, kid: &str) {
        let mut keys = self.lock();
        if let Some(position) = keys.iter().position(|key| key.kid == kid) {
            let key = keys.remove(position);
            self.retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.kid.clone(), key);
        }
        drop(keys);
        self.write_jwks();
    }

    /// A token of `claims` at `now`, signed with the default key.
    pub fn token(&self, claims: &Claims, now: DateTime<Utc>) -> String {
        let kid = self.lock().first().map(|key| key.kid.clone()).expect("a key");
        self.token_with(&kid, claims, now)
    }

    /// A token signed with key `kid` (in the JWKS or removed from it).
    pub fn token_with(&self, kid: &str, claims: &Claims, now: DateTime<Utc>) -> String {
        let key = self
            .lock()
            .iter()
            .find(|key| key.kid == kid)
            .cloned()
            .or_else(|| {
                self.retired
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(kid)
                    .cloned()
            })
            .unwrap_or_else(|| panic!("no key '{kid}'"));
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims.payload(now), &key.encoding).expect("the token signs")
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<SigningKey>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes the JWKS atomically (a server reading it never sees half a file).
    fn write_jwks(&self) {
        let keys: Vec<Value> = self.lock().iter().map(|key| key.jwk.clone()).collect();
        let staging = self.jwks.with_extension("next");
        std::fs::write(&staging, json!({ "keys": keys }).to_string()).expect("write the JWKS");
        std::fs::rename(&staging, &self.jwks).expect("move the JWKS into place");
    }
}
