//! Local mode's own key: an Ed25519 key the server keeps beside its database, with which
//! `coachflow token` mints tokens for trying the service as any person or system, without an
//! identity provider. Only a server in local mode (loopback only) accepts them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::jwks::{KeySet, VerifyingKey};

/// The issuer and audience of local tokens.
pub const LOCAL_ISSUER: &str = "coachflow-local";
pub const LOCAL_AUDIENCE: &str = "coachflow-local";

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// The local signing key.
#[derive(Debug)]
pub struct LocalKey {
    pair: Ed25519KeyPair,
    kid: String,
    path: PathBuf,
}

/// What a local token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalToken {
    pub subject: String,
    pub tenant: String,
    pub scopes: Vec<String>,
    /// The system acting for the subject (`act.sub`).
    pub delegate: Option<String>,
    pub lifetime: Duration,
}

impl LocalKey {
    /// The key in `path`, made (readable by its owner only) when there is none.
    pub fn load_or_create(path: &Path) -> Result<LocalKey, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => LocalKey::from_pem(path, &text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => LocalKey::create(path),
            Err(error) => Err(format!("cannot read the local token key {}: {error}", path.display())),
        }
    }

    fn create(path: &Path) -> Result<LocalKey, String> {
        let document = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
            .map_err(|_| "cannot generate a key".to_owned())?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(document.as_ref());
        let mut pem = format!("{PEM_BEGIN}\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str(PEM_END);
        pem.push('\n');
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| format!("cannot create {}: {error}", parent.display()))?;
        }
        let staging = path.with_extension(format!("new-{}", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&staging)
            .map_err(|error| format!("cannot write {}: {error}", staging.display()))?;
        file.write_all(pem.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|error| format!("cannot write {}: {error}", staging.display()))?;
        // Another process may have made one meanwhile: theirs wins, so both agree.
        match std::fs::hard_link(&staging, path) {
            Ok(()) => {
                let _ = std::fs::remove_file(&staging);
                tracing::info!(file = %path.display(), "made a key for local tokens");
                LocalKey::from_pem(path, &pem)
            }
            Err(_) => {
                let _ = std::fs::remove_file(&staging);
                let text = std::fs::read_to_string(path)
                    .map_err(|error| format!("cannot read the local token key {}: {error}", path.display()))?;
                LocalKey::from_pem(path, &text)
            }
        }
    }

    fn from_pem(path: &Path, text: &str) -> Result<LocalKey, String> {
        let body: String = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && *line != PEM_BEGIN && *line != PEM_END)
            .collect();
        let document = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| format!("{} is not a PEM private key", path.display()))?;
        let pair = Ed25519KeyPair::from_pkcs8(&document)
            .map_err(|_| format!("{} is not an Ed25519 private key", path.display()))?;
        let kid = crate::hex(&Sha256::digest(pair.public_key().as_ref())[..8]);
        Ok(LocalKey {
            pair,
            kid,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The public half, as the verifier reads keys.
    pub fn key_set(&self) -> KeySet {
        KeySet::new(vec![VerifyingKey::ed25519(&self.kid, self.pair.public_key().as_ref())])
    }

    /// A signed local token.
    pub fn mint(&self, token: &LocalToken, now: DateTime<Utc>) -> String {
        let encode = |value: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let lifetime = i64::try_from(token.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let mut claims = Map::new();
        claims.insert("iss".to_owned(), Value::from(LOCAL_ISSUER));
        claims.insert("aud".to_owned(), Value::from(LOCAL_AUDIENCE));
        claims.insert("sub".to_owned(), Value::from(token.subject.as_str()));
        claims.insert("tenant".to_owned(), Value::from(token.tenant.as_str()));
        claims.insert("iat".to_owned(), Value::from(now.timestamp()));
        claims.insert("exp".to_owned(), Value::from(now.timestamp().saturating_add(lifetime)));
        if !token.scopes.is_empty() {
            claims.insert("scope".to_owned(), Value::from(token.scopes.join(" ")));
        }
        if let Some(delegate) = &token.delegate {
            claims.insert("act".to_owned(), json!({"sub": delegate}));
        }
        let signing_input = format!("{}.{}", encode(&header), encode(&Value::Object(claims)));
        let signature = self.pair.sign(signing_input.as_bytes());
        format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature.as_ref())
        )
    }
}
