//! JSON Web Key Sets (RFC 7517): the public keys a token's signature is checked with.
//! RSA (`RS256`), P-256 (`ES256`) and Ed25519 (`EdDSA`) keys are read; others are skipped.

use base64::Engine as _;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

/// The signature algorithms tokens may use. `none` and the HMAC ones never verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Rs256,
    Es256,
    EdDsa,
}

impl Algorithm {
    /// The algorithm a JWS header names, or `None` for one that is not accepted.
    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "RS256" => Some(Algorithm::Rs256),
            "ES256" => Some(Algorithm::Es256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Es256 => "ES256",
            Algorithm::EdDsa => "EdDSA",
        }
    }
}

/// One public key, ready to verify with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    material: Material,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed P-256 point: `0x04 || x || y`.
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
}

impl VerifyingKey {
    /// Whether `signature` signs `message` under this key.
    pub fn verifies(&self, message: &[u8], signature_bytes: &[u8]) -> bool {
        match &self.material {
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature_bytes)
                .is_ok(),
            Material::P256(point) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature_bytes)
                .is_ok(),
            Material::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, key)
                .verify(message, signature_bytes)
                .is_ok(),
        }
    }

    /// An Ed25519 key from its 32 public bytes (the local mode's own key).
    pub fn ed25519(kid: &str, public_key: &[u8]) -> VerifyingKey {
        VerifyingKey {
            kid: Some(kid.to_owned()),
            algorithm: Algorithm::EdDsa,
            material: Material::Ed25519(public_key.to_vec()),
        }
    }
}

/// The keys of one JWKS document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    usage: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

fn decode(field: &str, text: Option<&str>) -> Result<Vec<u8>, String> {
    let text = text.ok_or_else(|| format!("has no '{field}'"))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| format!("'{field}' is not base64url"))
}

impl Jwk {
    fn key(&self) -> Result<VerifyingKey, String> {
        if self.usage.as_deref().is_some_and(|usage| usage != "sig") {
            return Err(format!(
                "is for '{}', not signatures",
                self.usage.as_deref().unwrap_or("")
            ));
        }
        let (algorithm, material) = match (self.kty.as_str(), self.crv.as_deref()) {
            ("RSA", _) => {
                let n = decode("n", self.n.as_deref())?;
                let e = decode("e", self.e.as_deref())?;
                if n.len() < 256 {
                    return Err("is an RSA key shorter than 2048 bits".to_owned());
                }
                (Algorithm::Rs256, Material::Rsa { n, e })
            }
            ("EC", Some("P-256")) => {
                let x = decode("x", self.x.as_deref())?;
                let y = decode("y", self.y.as_deref())?;
                if x.len() != 32 || y.len() != 32 {
                    return Err("is not a P-256 point".to_owned());
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                (Algorithm::Es256, Material::P256(point))
            }
            ("OKP", Some("Ed25519")) => {
                let x = decode("x", self.x.as_deref())?;
                if x.len() != 32 {
                    return Err("is not an Ed25519 key".to_owned());
                }
                (Algorithm::EdDsa, Material::Ed25519(x))
            }
            (kty, crv) => {
                return Err(format!(
                    "is a {kty}{} key, which is not read (RSA, EC P-256 and OKP Ed25519 are)",
                    crv.map(|crv| format!(" {crv}")).unwrap_or_default()
                ));
            }
        };
        if let Some(alg) = &self.alg
            && alg != algorithm.as_str()
        {
            return Err(format!("says alg '{alg}', which its key type cannot be used with here"));
        }
        Ok(VerifyingKey {
            kid: self.kid.clone(),
            algorithm,
            material,
        })
    }
}

impl KeySet {
    pub fn new(keys: Vec<VerifyingKey>) -> KeySet {
        KeySet { keys }
    }

    /// Reads a JWKS document; keys it cannot use are skipped and described in the second
    /// value (for a log line). A document that is not a JWKS at all is an error.
    pub fn parse(bytes: &[u8]) -> Result<(KeySet, Vec<String>), String> {
        let document: Document =
            serde_json::from_slice(bytes).map_err(|error| format!("not a JWKS document: {error}"))?;
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (index, jwk) in document.keys.iter().enumerate() {
            match jwk.key() {
                Ok(key) => keys.push(key),
                Err(why) => skipped.push(format!(
                    "key {index}{} {why}",
                    jwk.kid.as_deref().map(|kid| format!(" ('{kid}')")).unwrap_or_default()
                )),
            }
        }
        Ok((KeySet { keys }, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token's header points to: by `kid`, or the only key of the algorithm when
    /// the header has none.
    pub fn find(&self, kid: Option<&str>, algorithm: Algorithm) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self
                .keys
                .iter()
                .find(|key| key.kid.as_deref() == Some(kid) && key.algorithm == algorithm),
            None => {
                let mut candidates = self.keys.iter().filter(|key| key.algorithm == algorithm);
                let first = candidates.next()?;
                candidates.next().is_none().then_some(first)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_other_types_and_uses_are_skipped_with_a_reason() {
        let (keys, skipped) = KeySet::parse(
            br#"{"keys": [
                {"kty": "oct", "kid": "h", "k": "c2VjcmV0"},
                {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                {"kty": "OKP", "crv": "Ed25519", "kid": "enc", "use": "enc", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"}
            ]}"#,
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(keys.len(), 1);
        assert!(keys.find(Some("ed"), Algorithm::EdDsa).is_some());
        assert!(keys.find(Some("ed"), Algorithm::Rs256).is_none());
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert!(skipped[0].contains("oct"), "{skipped:?}");
        assert!(skipped[1].contains("not signatures"), "{skipped:?}");
    }

    #[test]
    fn a_document_that_is_no_jwks_is_an_error() {
        assert!(KeySet::parse(b"<html>").is_err());
        assert!(KeySet::parse(br#"{"keys": 3}"#).is_err());
    }

    #[test]
    fn none_and_hmac_are_not_algorithms_tokens_may_use() {
        for name in ["none", "HS256", "HS512", "RS512", "PS256", ""] {
            assert_eq!(Algorithm::parse(name), None, "{name}");
        }
    }
}
