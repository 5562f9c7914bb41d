//! A small HTTPS server that serves a JWKS file, as an identity provider's endpoint does,
//! with the test CA's certificate for `localhost`; it counts the fetches.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Test-only TLS material (`fixtures/tls`).
pub fn tls_fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/tls")
        .join(name)
}

/// A running JWKS endpoint; it stops when dropped.
#[derive(Debug)]
pub struct JwksEndpoint {
    port: u16,
    fetches: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksEndpoint {
    /// Serves the file at `jwks` (read on every request) on a free port of 127.0.0.1.
    pub async fn start(jwks: &Path) -> JwksEndpoint {
        let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls_fixture("server.pem"))
            .expect("the server certificate")
            .collect::<Result<_, _>>()
            .expect("PEM");
        let key = PrivateKeyDer::from_pem_file(tls_fixture("server.key")).expect("the server key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certificates, key)
            .expect("a server configuration");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let fetches = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&fetches);
        let jwks = jwks.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let acceptor = acceptor.clone();
                let counted = Arc::clone(&counted);
                let jwks = jwks.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => request.extend_from_slice(&buffer[..read]),
                        }
                    }
                    counted.fetch_add(1, Ordering::SeqCst);
                    let body = std::fs::read(&jwks).unwrap_or_default();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes()).await;
                    let _ = stream.write_all(&body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        JwksEndpoint { port, fetches, task }
    }

    /// `https://localhost:{port}/.well-known/jwks.json`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/.well-known/jwks.json", self.port)
    }

    /// How many times the JWKS was fetched.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}
