//! Request ids (AIP-155): a repeat of a request returns the first one's outcome and changes
//! nothing; the same id for a different request is refused.
//!
//! A request is told apart from another by a fingerprint of the domain request (the
//! method, the principal that sent it, and what it asks), not of its wire form. What is
//! remembered is where the first request left the resource (the engagement's sequence, the
//! model's version), so a repeat answers with the resource as it was then, shown to the
//! caller as their roles allow now.

use chrono::{DateTime, Utc};
use coachflow_store::NewIdempotencyKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::authorization::{Method, Principal};
use super::error::AppError;

/// A request that carries a `request_id`.
#[derive(Debug, Clone)]
pub struct RequestKey {
    pub tenant: String,
    pub request_id: String,
    pub method: &'static str,
    /// SHA-256 of the method, the principal and the domain request.
    pub hash: String,
}

impl RequestKey {
    /// The key of `request`, or `None` without a `request_id`.
    pub fn of(
        tenant: &str,
        method: Method,
        principal: &Principal,
        request_id: &str,
        request: &impl Serialize,
    ) -> Result<Option<RequestKey>, AppError> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let body = serde_json::to_vec(request)
            .map_err(|error| AppError::Internal(format!("cannot fingerprint the request: {error}")))?;
        let mut hasher = Sha256::new();
        for part in [
            method.name.as_bytes(),
            principal.subject.as_bytes(),
            principal.delegate.as_deref().unwrap_or_default().as_bytes(),
            &body,
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Ok(Some(RequestKey {
            tenant: tenant.to_owned(),
            request_id: request_id.to_owned(),
            method: method.short_name(),
            hash: crate::hex(&hasher.finalize()),
        }))
    }

    /// The row that remembers `outcome` under this key until `now + ttl`.
    pub(super) fn remember(
        &self,
        outcome: &Outcome,
        now: DateTime<Utc>,
        ttl: std::time::Duration,
    ) -> Result<NewIdempotencyKey, AppError> {
        let ttl = chrono::TimeDelta::from_std(ttl).unwrap_or(chrono::TimeDelta::days(1));
        let response = serde_json::to_vec(outcome)
            .map_err(|error| AppError::Internal(format!("cannot encode the outcome: {error}")))?;
        Ok(NewIdempotencyKey {
            tenant: self.tenant.clone(),
            request_id: self.request_id.clone(),
            method: self.method.to_owned(),
            request_hash: self.hash.clone(),
            response,
            created_at: now,
            expires_at: now + ttl,
        })
    }
}

/// Where a request left its resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Outcome {
    /// The engagement (its id within the tenant) at this sequence.
    Engagement { engagement: String, sequence: u64 },
    /// This version of the model.
    Model { version: u32 },
    /// The long-running operation (its id within the tenant) the request started.
    Operation { id: String },
}

impl Outcome {
    pub(super) fn decode(bytes: &[u8]) -> Result<Outcome, AppError> {
        serde_json::from_slice(bytes)
            .map_err(|error| AppError::Internal(format!("a remembered outcome is unreadable: {error}")))
    }
}
