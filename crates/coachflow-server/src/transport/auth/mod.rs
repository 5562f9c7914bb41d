//! Authentication: a tower layer beside the tracing layer that turns every call's
//! `authorization: Bearer <JWT>` into a verified [`Principal`], or answers UNAUTHENTICATED
//! with the reason in `google.rpc.ErrorInfo` before the call reaches a handler. Health and
//! reflection need no token.
//!
//! With the issuer's settings (`auth.issuer`, `auth.audience`, `auth.jwks`) every other call
//! needs a token of that issuer. Without them the server runs in local mode: it listens on
//! loopback only, a call without a token acts as the local administrator, and a token minted
//! by `coachflow token` (signed with the key beside the database) acts as whoever it names.

pub mod jwks;
pub mod jwt;
pub mod local;
pub mod source;
pub mod verified;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic_types::{ErrorDetails, StatusExt as _};

use self::jwt::{TokenError, Validation};
use self::source::KeySource;
use self::verified::VerifiedTokens;
use crate::application::Principal;
use crate::clock::SharedClock;
use crate::metrics as names;
use crate::transport::status::ERROR_DOMAIN;

/// Paths that need no token: the health service (probes) and reflection.
const OPEN_PATHS: [&str; 3] = [
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// How calls are authenticated.
#[derive(Debug)]
pub enum Mode {
    /// Tokens of the configured issuer; every call needs one.
    Issuer { keys: KeySource, validation: Validation },
    /// Loopback only: no token is the local administrator; local tokens act as they say.
    Local { keys: KeySource, validation: Validation },
}

/// Verifies the principal of every call.
#[derive(Debug)]
pub struct Authenticator {
    mode: Mode,
    clock: SharedClock,
    verified: VerifiedTokens,
}

impl Authenticator {
    pub fn new(mode: Mode, clock: SharedClock) -> Authenticator {
        Authenticator {
            mode,
            clock,
            verified: VerifiedTokens::default(),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self.mode, Mode::Local { .. })
    }

    /// Reads the issuer's keys ahead of the first call.
    pub async fn prefetch(&self) {
        match &self.mode {
            Mode::Issuer { keys, .. } | Mode::Local { keys, .. } => keys.prefetch().await,
        }
    }

    /// The principal of a call with these headers from `peer`.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Principal, TokenError> {
        let token = bearer(headers)?;
        let (keys, validation) = match &self.mode {
            Mode::Issuer { keys, validation } => (keys, validation),
            Mode::Local { keys, validation } => {
                if !peer.is_some_and(|peer| peer.ip().is_loopback()) {
                    return Err(TokenError::Malformed(
                        "local mode accepts calls from loopback addresses only".to_owned(),
                    ));
                }
                match token {
                    None => return Ok(Principal::local_administrator()),
                    Some(_) => (keys, validation),
                }
            }
        };
        let token = token.ok_or(TokenError::Missing)?;
        let now = self.clock.now();
        let current = keys.keys().await.map_err(TokenError::KeysUnavailable)?;
        if let Some(claims) = self.verified.claims(token, &current) {
            return jwt::principal(&claims, validation, now);
        }
        let unverified = jwt::parse(token)?;
        let refreshed;
        let (key, claims) = match unverified.verified_claims(&current) {
            Err(TokenError::UnknownKey(_)) => {
                // A key the issuer added since: look again.
                refreshed = keys
                    .refresh_for_unknown_key()
                    .await
                    .map_err(TokenError::KeysUnavailable)?;
                unverified.verified_claims(&refreshed)?
            }
            outcome => outcome?,
        };
        let claims = Arc::new(claims);
        self.verified.keep(token, key, Arc::clone(&claims), now.timestamp());
        jwt::principal(&claims, validation, now)
    }
}

/// The bearer token of the headers; `None` without an `authorization` header.
fn bearer(headers: &http::HeaderMap) -> Result<Option<&str>, TokenError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| TokenError::Malformed("the authorization header is not ASCII".to_owned()))?;
    match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(TokenError::Malformed(
            "the authorization header is not 'Bearer <token>'".to_owned(),
        )),
    }
}

fn peer_of<B>(request: &http::Request<B>) -> Option<SocketAddr> {
    let extensions = request.extensions();
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|info| info.get_ref().remote_addr())
        })
}

/// The UNAUTHENTICATED answer for `error`.
fn unauthenticated(error: &TokenError) -> tonic::Status {
    let details = ErrorDetails::with_error_info(error.reason(), ERROR_DOMAIN, std::collections::HashMap::new());
    tonic::Status::with_error_details(tonic::Code::Unauthenticated, error.to_string(), details)
}

/// The layer that authenticates every call.
#[derive(Debug, Clone)]
pub struct Authenticated<S> {
    inner: S,
    authenticator: Arc<Authenticator>,
}

impl<S> Authenticated<S> {
    pub fn layer(authenticator: Arc<Authenticator>) -> impl tower::Layer<S, Service = Authenticated<S>> + Clone {
        tower::layer::layer_fn(move |inner| Authenticated {
            inner,
            authenticator: Arc::clone(&authenticator),
        })
    }
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for Authenticated<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    RequestBody: Send + 'static,
    ResponseBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<RequestBody>) -> Self::Future {
        // The clone is not ready; the ready one goes into the future (tower's rule).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if OPEN_PATHS.iter().any(|path| request.uri().path().starts_with(path)) {
            return Box::pin(inner.call(request));
        }
        let authenticator = Arc::clone(&self.authenticator);
        Box::pin(async move {
            let peer = peer_of(&request);
            match authenticator.authenticate(request.headers(), peer).await {
                Ok(principal) => {
                    request.extensions_mut().insert(principal);
                    inner.call(request).await
                }
                Err(error) => {
                    metrics::counter!(names::AUTH_FAILURES, "reason" => error.reason()).increment(1);
                    tracing::info!(path = %request.uri().path(), reason = error.reason(), error = %error, "unauthenticated call refused");
                    Ok(unauthenticated(&error).into_http())
                }
            }
        })
    }
}
