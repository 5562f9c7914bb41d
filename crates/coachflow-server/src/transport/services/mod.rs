//! The tonic services: thin handlers that parse requests into domain values, call the
//! application with the verified principal, and convert its results back, showing content
//! only as the caller may see it.

pub mod engagements;
pub mod events;
pub mod models;
pub mod operations;

use std::future::Future;
use std::time::Instant;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tonic::{Request, Response, Status};

use crate::application::{AppError, Method, Principal};
use crate::metrics as names;
use crate::transport::status;

/// The verified principal the authentication layer attached to the request.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, AppError> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| AppError::Internal("the request reached a handler without a principal".to_owned()))
}

/// Runs a handler for `method`, recording its count by status code and its latency, and
/// logging refusals of authorization with who was refused and why.
pub async fn observe<T>(
    method: Method,
    principal: &Principal,
    handler: impl Future<Output = Result<T, AppError>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let result = handler.await;
    let code = match &result {
        Ok(_) => tonic::Code::Ok,
        Err(error) => status::code(error),
    };
    let short = method.short_name();
    metrics::histogram!(names::GRPC_REQUEST_DURATION, "method" => short).record(started.elapsed().as_secs_f64());
    metrics::counter!(names::GRPC_REQUESTS, "method" => short, "code" => code_name(code)).increment(1);
    match result {
        Ok(response) => Ok(Response::new(response)),
        Err(error) => {
            match &error {
                AppError::Internal(_) | AppError::Unavailable(_) => {
                    tracing::error!(method = short, error = %error, "request failed");
                }
                AppError::PermissionDenied(denial) => {
                    metrics::counter!(names::AUTH_DENIALS, "method" => short, "reason" => denial.reason.as_str())
                        .increment(1);
                    tracing::warn!(
                        method = short,
                        principal = %principal,
                        reason = denial.reason.as_str(),
                        "permission denied"
                    );
                }
                _ => tracing::debug!(method = short, error = %error, "request refused"),
            }
            Err(error.into())
        }
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::Ok => "OK",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::Internal => "INTERNAL",
        _ => "OTHER",
    }
}

pub const DEFAULT_PAGE_SIZE: u64 = 50;
pub const MAX_PAGE_SIZE: u64 = 1000;

/// `page_size`: 0 means the default; more than the maximum is capped.
pub fn page_size(page_size: i32) -> Result<u64, AppError> {
    match u64::try_from(page_size) {
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(size) => Ok(size.min(MAX_PAGE_SIZE)),
        Err(_) => Err(AppError::invalid("page_size", "must not be negative")),
    }
}

#[derive(Serialize, Deserialize)]
struct PageToken<C> {
    /// Which list the token belongs to, and with which filter.
    f: String,
    /// Where the next page starts.
    c: C,
}

/// An opaque page token: where the next page starts, bound to the list and its filter.
pub fn encode_page_token<C: Serialize>(list: &str, filter: &str, cursor: &C) -> String {
    let token = PageToken {
        f: fingerprint(list, filter),
        c: cursor,
    };
    let json = serde_json::to_vec(&token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The cursor in a page token; INVALID_ARGUMENT for a token that is malformed or was
/// issued for another list or filter.
pub fn decode_page_token<C: for<'de> Deserialize<'de>>(
    list: &str,
    filter: &str,
    token: &str,
) -> Result<Option<C>, AppError> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || AppError::invalid("page_token", "is not a page token this list issued");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let token: PageToken<C> = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if token.f != fingerprint(list, filter) {
        return Err(AppError::invalid(
            "page_token",
            "was issued for a different request; keep every other field the same when paging",
        ));
    }
    Ok(Some(token.c))
}

fn fingerprint(list: &str, filter: &str) -> String {
    crate::hex(&Sha256::digest(format!("{list}\n{filter}").as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_are_bound_to_their_filter() {
        let token = encode_page_token("engagements", "state=active", &"e-17".to_owned());
        let cursor: Option<String> = decode_page_token("engagements", "state=active", &token).unwrap();
        assert_eq!(cursor.as_deref(), Some("e-17"));
        let error = decode_page_token::<String>("engagements", "state=completed", &token).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("page_token: was issued for a different request")
        );
        let error = decode_page_token::<String>("engagements", "", "not a token!").unwrap_err();
        assert_eq!(error.to_string(), "page_token: is not a page token this list issued");
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0).unwrap(), DEFAULT_PAGE_SIZE);
        assert_eq!(page_size(5000).unwrap(), MAX_PAGE_SIZE);
        assert!(page_size(-1).is_err());
    }
}
