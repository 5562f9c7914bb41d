//! Where the issuer's keys come from, and keeping them current without a restart:
//!
//! - a `file://` JWKS is read again whenever the file changes (size, modification time or
//!   inode; a rotation by atomic rename is seen at once);
//! - an `https://` JWKS is fetched and kept for its cache lifetime, fetched again when it
//!   expires and when a token names a key id it lacks (at most once per
//!   [`REFETCH_INTERVAL`], so random key ids cannot make the service hammer the issuer). A
//!   failed fetch keeps the keys it has, and says so in the log.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::sync::Mutex as AsyncMutex;

use super::jwks::KeySet;
use crate::clock::SharedClock;

/// The shortest pause between two fetches a token with an unknown key id causes.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// The largest JWKS document read.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The issuer's keys.
#[derive(Debug)]
pub enum KeySource {
    /// Keys known when the service started (local mode's own key).
    Fixed(Arc<KeySet>),
    File(FileKeys),
    Https(HttpsKeys),
}

impl KeySource {
    /// The keys as they are now.
    pub async fn keys(&self) -> Result<Arc<KeySet>, String> {
        match self {
            KeySource::Fixed(keys) => Ok(Arc::clone(keys)),
            KeySource::File(file) => file.keys(),
            KeySource::Https(https) => https.keys(false).await,
        }
    }

    /// Reads the keys once at start, so the first call does not wait for them; a failure is
    /// logged and the keys are read again when a call needs them.
    pub async fn prefetch(&self) {
        if let Err(error) = self.keys().await {
            tracing::warn!(error = %error, "cannot read the issuer's keys yet; calls will try again");
        }
    }

    /// The keys again, read anew if the source may have gained the key a token names.
    pub async fn refresh_for_unknown_key(&self) -> Result<Arc<KeySet>, String> {
        match self {
            KeySource::Https(https) => https.keys(true).await,
            other => other.keys().await,
        }
    }
}

/// What tells a file's versions apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    length: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

fn stamp(metadata: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Stamp {
        length: metadata.len(),
        modified: metadata.modified().ok(),
        inode,
    }
}

/// A JWKS file, read again when it changes.
#[derive(Debug)]
pub struct FileKeys {
    path: PathBuf,
    current: Mutex<Option<(Stamp, Arc<KeySet>)>>,
}

impl FileKeys {
    /// Reads the file once, so a missing or broken one is found at start.
    pub fn open(path: PathBuf) -> Result<FileKeys, String> {
        let keys = FileKeys {
            path,
            current: Mutex::new(None),
        };
        keys.keys()?;
        Ok(keys)
    }

    fn keys(&self) -> Result<Arc<KeySet>, String> {
        let metadata = std::fs::metadata(&self.path).map_err(|error| format!("{}: {error}", self.path.display()));
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let metadata = match metadata {
            Ok(metadata) => metadata,
            // Keep the keys read last while the file is being replaced.
            Err(error) => return current.as_ref().map(|(_, keys)| Arc::clone(keys)).ok_or(error),
        };
        let stamp = stamp(&metadata);
        if let Some((known, keys)) = current.as_ref()
            && *known == stamp
        {
            return Ok(Arc::clone(keys));
        }
        let bytes = std::fs::read(&self.path).map_err(|error| format!("{}: {error}", self.path.display()))?;
        match KeySet::parse(&bytes) {
            Ok((keys, skipped)) => {
                for why in &skipped {
                    tracing::warn!(file = %self.path.display(), "JWKS {why}; skipped");
                }
                tracing::info!(file = %self.path.display(), keys = keys.len(), "read the JWKS");
                let keys = Arc::new(keys);
                *current = Some((stamp, Arc::clone(&keys)));
                Ok(keys)
            }
            Err(error) => match current.as_ref() {
                // A half-written file: keep the last good keys until it is whole.
                Some((_, keys)) => {
                    tracing::warn!(file = %self.path.display(), error = %error, "cannot read the JWKS; keeping the keys read before");
                    Ok(Arc::clone(keys))
                }
                None => Err(format!("{}: {error}", self.path.display())),
            },
        }
    }
}

/// A JWKS fetched over HTTPS.
pub struct HttpsKeys {
    uri: hyper::Uri,
    tls: tokio_rustls::TlsConnector,
    lifetime: Duration,
    /// The injected clock: keys age, and refetches are spaced, by the service's time.
    clock: SharedClock,
    state: AsyncMutex<FetchState>,
}

impl std::fmt::Debug for HttpsKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("HttpsKeys")
            .field("uri", &self.uri)
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct FetchState {
    keys: Option<Arc<KeySet>>,
    fetched_at: Option<DateTime<Utc>>,
    last_attempt: Option<DateTime<Utc>>,
    /// How many fetches were made, for the tests' and operators' curiosity.
    fetches: u64,
}

impl HttpsKeys {
    /// `url` must be `https://`; `extra_roots` (PEM) are trusted instead of the platform's
    /// roots when given (an in-house issuer's CA).
    pub fn new(
        url: &str,
        extra_roots: Option<&[u8]>,
        lifetime: Duration,
        clock: SharedClock,
    ) -> Result<HttpsKeys, String> {
        let uri: hyper::Uri = url.parse().map_err(|error| format!("'{url}' is not a URL: {error}"))?;
        if uri.scheme_str() != Some("https") || uri.host().is_none() {
            return Err(format!("'{url}' is not an https:// URL"));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?;
        let config = match extra_roots {
            Some(pem) => {
                use rustls_pki_types::pem::PemObject as _;
                let mut roots = rustls::RootCertStore::empty();
                for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                    let certificate = certificate.map_err(|error| format!("the CA file is not PEM: {error}"))?;
                    roots
                        .add(certificate)
                        .map_err(|error| format!("the CA file holds a bad certificate: {error}"))?;
                }
                if roots.is_empty() {
                    return Err("the CA file holds no certificate".to_owned());
                }
                builder.with_root_certificates(roots).with_no_client_auth()
            }
            None => {
                let verifier = rustls_platform_verifier::Verifier::new(provider)
                    .map_err(|error| format!("cannot load the platform's certificate roots: {error}"))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(verifier))
                    .with_no_client_auth()
            }
        };
        Ok(HttpsKeys {
            uri,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            lifetime,
            clock,
            state: AsyncMutex::new(FetchState::default()),
        })
    }

    async fn keys(&self, unknown_key: bool) -> Result<Arc<KeySet>, String> {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        let since = |at: DateTime<Utc>| (now - at).to_std().unwrap_or(Duration::ZERO);
        let fresh = state.fetched_at.is_some_and(|fetched| since(fetched) < self.lifetime);
        let may_refetch = state
            .last_attempt
            .is_none_or(|attempt| since(attempt) >= REFETCH_INTERVAL);
        let wanted = state.keys.is_none() || !fresh || unknown_key;
        if let Some(keys) = &state.keys
            && (!wanted || !may_refetch)
        {
            return Ok(Arc::clone(keys));
        }
        if state.keys.is_none() && !may_refetch {
            return Err("the issuer's key set could not be fetched; retrying shortly".to_owned());
        }
        state.last_attempt = Some(now);
        state.fetches += 1;
        let fetched = match tokio::time::timeout(FETCH_TIMEOUT, self.fetch()).await {
            Ok(fetched) => fetched,
            Err(_) => Err(format!("no answer within {FETCH_TIMEOUT:?}")),
        };
        match fetched {
            Ok((keys, skipped)) => {
                for why in &skipped {
                    tracing::warn!(url = %self.uri, "JWKS {why}; skipped");
                }
                tracing::info!(url = %self.uri, keys = keys.len(), fetches = state.fetches, "fetched the JWKS");
                let keys = Arc::new(keys);
                state.keys = Some(Arc::clone(&keys));
                state.fetched_at = Some(now);
                Ok(keys)
            }
            Err(error) => match &state.keys {
                Some(keys) => {
                    tracing::warn!(url = %self.uri, error = %error, "cannot fetch the JWKS; keeping the keys fetched before");
                    Ok(Arc::clone(keys))
                }
                None => Err(format!("cannot fetch {}: {error}", self.uri)),
            },
        }
    }

    async fn fetch(&self) -> Result<(KeySet, Vec<String>), String> {
        let host = self.uri.host().unwrap_or_default().to_owned();
        let port = self.uri.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|error| format!("cannot connect: {error}"))?;
        let server_name =
            rustls_pki_types::ServerName::try_from(host.trim_matches(|c| c == '[' || c == ']').to_owned())
                .map_err(|error| format!("'{host}' is not a server name: {error}"))?;
        let tls = self
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|error| format!("TLS handshake failed: {error}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|error| format!("HTTP handshake failed: {error}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let path = self.uri.path_and_query().map_or("/", |path| path.as_str());
        let request = http::Request::get(path)
            .header(
                http::header::HOST,
                self.uri
                    .authority()
                    .map_or(host.as_str(), |authority| authority.as_str()),
            )
            .header(http::header::ACCEPT, "application/json, application/jwk-set+json")
            .header(
                http::header::USER_AGENT,
                concat!("coachflow/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|error| error.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("request failed: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("the issuer answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
            .collect()
            .await
            .map_err(|error| format!("cannot read the answer: {error}"))?
            .to_bytes();
        KeySet::parse(&body)
    }
}
