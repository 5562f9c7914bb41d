//! Verifying a bearer JWT (RFC 7519): its signature by a key of the issuer's set, then its
//! issuer, audience and validity period against the injected clock, then the claims a
//! principal is made of (`sub`, the tenant claim, `scope`, `act`).

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::jwks::{Algorithm, KeySet, VerifyingKey};
use crate::application::authorization::{Principal, PrincipalKind, Scope, Tenancy};

/// What a token must say to be accepted.
#[derive(Debug, Clone)]
pub struct Validation {
    pub issuer: String,
    pub audience: String,
    /// The claim that names the token's tenant.
    pub tenant_claim: String,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

/// Why a token was refused; each is a stable reason in `google.rpc.ErrorInfo`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the request has no 'authorization: Bearer <token>' metadata")]
    Missing,
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's algorithm '{0}' is not accepted (RS256, ES256 and EdDSA are)")]
    AlgorithmNotAllowed(String),
    #[error("no key of the issuer's key set has the token's key id{}", .0.as_deref().map(|kid| format!(" '{kid}'")).unwrap_or_default())]
    UnknownKey(Option<String>),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token expired at {0}")]
    Expired(String),
    #[error("the token is not valid before {0}")]
    NotYetValid(String),
    #[error("the token's issuer is not the one this service trusts")]
    WrongIssuer,
    #[error("the token is not meant for this service (its audience does not include it)")]
    WrongAudience,
    #[error("the token has no valid '{0}' claim")]
    MissingClaim(String),
    #[error("the issuer's keys cannot be read: {0}")]
    KeysUnavailable(String),
}

impl TokenError {
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "TOKEN_MISSING",
            TokenError::Malformed(_) => "TOKEN_MALFORMED",
            TokenError::AlgorithmNotAllowed(_) => "ALGORITHM_NOT_ALLOWED",
            TokenError::UnknownKey(_) => "UNKNOWN_KEY",
            TokenError::BadSignature => "BAD_SIGNATURE",
            TokenError::Expired(_) => "TOKEN_EXPIRED",
            TokenError::NotYetValid(_) => "TOKEN_NOT_YET_VALID",
            TokenError::WrongIssuer => "WRONG_ISSUER",
            TokenError::WrongAudience => "WRONG_AUDIENCE",
            TokenError::MissingClaim(_) => "CLAIM_MISSING",
            TokenError::KeysUnavailable(_) => "KEYS_UNAVAILABLE",
        }
    }
}

/// A token split into its parts, its header read; the signature not yet checked.
#[derive(Debug)]
pub struct Unverified<'a> {
    pub algorithm: Algorithm,
    pub kid: Option<String>,
    signing_input: &'a str,
    payload: &'a str,
    signature: Vec<u8>,
}

fn base64url(part: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::Malformed(format!("its {what} is not base64url")))
}

/// Splits a compact JWS and reads its header.
pub fn parse(token: &str) -> Result<Unverified<'_>, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("it is not three dot-separated parts".to_owned()));
    };
    let header: Value = serde_json::from_slice(&base64url(header, "header")?)
        .map_err(|_| TokenError::Malformed("its header is not JSON".to_owned()))?;
    if header.get("crit").is_some() {
        return Err(TokenError::Malformed("it names critical header extensions".to_owned()));
    }
    let name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| TokenError::Malformed("its header has no alg".to_owned()))?;
    let algorithm = Algorithm::parse(name).ok_or_else(|| TokenError::AlgorithmNotAllowed(name.to_owned()))?;
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    let signing_input = &token[..token.len() - signature.len() - 1];
    Ok(Unverified {
        algorithm,
        kid,
        signing_input,
        payload,
        signature: base64url(signature, "signature")?,
    })
}

impl Unverified<'_> {
    /// Checks the signature with the header's key of `keys`: that key and the payload's
    /// claims, not yet checked themselves.
    pub fn verified_claims<'k>(&self, keys: &'k KeySet) -> Result<(&'k VerifyingKey, Value), TokenError> {
        let key = keys
            .find(self.kid.as_deref(), self.algorithm)
            .ok_or_else(|| TokenError::UnknownKey(self.kid.clone()))?;
        if !key.verifies(self.signing_input.as_bytes(), &self.signature) {
            return Err(TokenError::BadSignature);
        }
        let claims: Value = serde_json::from_slice(&base64url(self.payload, "payload")?)
            .map_err(|_| TokenError::Malformed("its payload is not JSON".to_owned()))?;
        if !claims.is_object() {
            return Err(TokenError::Malformed("its payload is not a JSON object".to_owned()));
        }
        Ok((key, claims))
    }
}

fn time_claim(claims: &Value, name: &str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => value
            .as_i64()
            .or_else(|| value.as_f64().map(|seconds| seconds.floor() as i64))
            .map(Some)
            .ok_or_else(|| TokenError::MissingClaim(name.to_owned())),
    }
}

fn rfc3339(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0).map_or_else(|| seconds.to_string(), crate::rfc3339)
}

/// The principal a verified token's claims name, after its issuer, audience and validity.
pub fn principal(claims: &Value, validation: &Validation, now: DateTime<Utc>) -> Result<Principal, TokenError> {
    if claims.get("iss").and_then(Value::as_str) != Some(validation.issuer.as_str()) {
        return Err(TokenError::WrongIssuer);
    }
    let audience_matches = match claims.get("aud") {
        Some(Value::String(audience)) => *audience == validation.audience,
        Some(Value::Array(audiences)) => audiences
            .iter()
            .any(|audience| audience.as_str() == Some(validation.audience.as_str())),
        _ => false,
    };
    if !audience_matches {
        return Err(TokenError::WrongAudience);
    }
    let leeway = i64::try_from(validation.leeway.as_secs()).unwrap_or(i64::MAX);
    let now = now.timestamp();
    let expires = time_claim(claims, "exp")?.ok_or_else(|| TokenError::MissingClaim("exp".to_owned()))?;
    if now > expires.saturating_add(leeway) {
        return Err(TokenError::Expired(rfc3339(expires)));
    }
    if let Some(not_before) = time_claim(claims, "nbf")?
        && now.saturating_add(leeway) < not_before
    {
        return Err(TokenError::NotYetValid(rfc3339(not_before)));
    }
    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|subject| !subject.is_empty() && subject.len() <= 256)
        .ok_or_else(|| TokenError::MissingClaim("sub".to_owned()))?;
    let tenant = claims
        .get(&validation.tenant_claim)
        .and_then(Value::as_str)
        .filter(|tenant| crate::application::names::is_valid_id(tenant))
        .ok_or_else(|| TokenError::MissingClaim(validation.tenant_claim.clone()))?;
    let scopes: BTreeSet<Scope> = match claims.get("scope") {
        Some(Value::String(scopes)) => scopes.split_whitespace().filter_map(Scope::parse).collect(),
        Some(Value::Array(scopes)) => scopes
            .iter()
            .filter_map(Value::as_str)
            .filter_map(Scope::parse)
            .collect(),
        _ => BTreeSet::new(),
    };
    let delegate = match claims.get("act") {
        None | Some(Value::Null) => None,
        Some(act) => Some(
            act.get("sub")
                .and_then(Value::as_str)
                .filter(|actor| !actor.is_empty() && actor.len() <= 256)
                .ok_or_else(|| TokenError::MissingClaim("act.sub".to_owned()))?
                .to_owned(),
        ),
    };
    Ok(Principal {
        subject: subject.to_owned(),
        tenancy: Tenancy::One(tenant.to_owned()),
        scopes,
        delegate,
        kind: PrincipalKind::Token,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn validation() -> Validation {
        Validation {
            issuer: "https://idp.example".to_owned(),
            audience: "coachflow".to_owned(),
            tenant_claim: "tenant".to_owned(),
            leeway: Duration::from_secs(60),
        }
    }

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn claims(extra: Value) -> Value {
        let mut claims = json!({
            "iss": "https://idp.example", "aud": ["other", "coachflow"], "sub": "coach-1",
            "tenant": "acme", "exp": 1_800_000_300, "nbf": 1_799_999_000,
            "scope": "engagements:read unknown:scope",
        });
        if let (Value::Object(claims), Value::Object(extra)) = (&mut claims, extra) {
            claims.extend(extra);
        }
        claims
    }

    fn refused(extra: Value) -> &'static str {
        match principal(&claims(extra), &validation(), now()) {
            Ok(principal) => panic!("accepted: {principal:?}"),
            Err(error) => error.reason(),
        }
    }

    #[test]
    fn claims_make_the_principal() {
        let principal = principal(
            &claims(json!({"act": {"sub": "lms", "act": {"sub": "gateway"}}})),
            &validation(),
            now(),
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(principal.subject, "coach-1");
        assert_eq!(principal.tenancy, Tenancy::One("acme".to_owned()));
        assert_eq!(principal.scopes, BTreeSet::from([Scope::EngagementsRead]));
        assert_eq!(principal.delegate.as_deref(), Some("lms"));
    }

    #[test]
    fn issuer_audience_and_time_are_checked_with_leeway() {
        assert_eq!(refused(json!({"iss": "https://evil.example"})), "WRONG_ISSUER");
        assert_eq!(refused(json!({"aud": "someone-else"})), "WRONG_AUDIENCE");
        assert_eq!(refused(json!({"exp": 1_799_999_900})), "TOKEN_EXPIRED");
        assert_eq!(refused(json!({"exp": null})), "CLAIM_MISSING");
        assert_eq!(refused(json!({"nbf": 1_800_000_100})), "TOKEN_NOT_YET_VALID");
        assert_eq!(refused(json!({"tenant": "Not A Tenant"})), "CLAIM_MISSING");
        assert_eq!(refused(json!({"sub": ""})), "CLAIM_MISSING");
        // Within the leeway.
        assert!(principal(&claims(json!({"exp": 1_799_999_950})), &validation(), now()).is_ok());
        assert!(principal(&claims(json!({"nbf": 1_800_000_030})), &validation(), now()).is_ok());
    }

    #[test]
    fn malformed_tokens_are_refused_without_panicking() {
        for token in [
            "",
            "a",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            "e30.e30.",
            "eyJhbGciOiJub25lIn0.e30.",
        ] {
            assert!(parse(token).is_err(), "{token}");
        }
        let none = format!(
            "{}.e30.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#)
        );
        assert_eq!(parse(&none).map(|_| ()).unwrap_err().reason(), "ALGORITHM_NOT_ALLOWED");
        let hmac = format!(
            "{}.e30.c2ln",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#)
        );
        assert_eq!(parse(&hmac).map(|_| ()).unwrap_err().reason(), "ALGORITHM_NOT_ALLOWED");
    }
}
