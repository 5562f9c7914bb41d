//! The transport layer: the tonic services, the authentication layer, proto ⇄ domain
//! conversion and the projection of replies by what the caller may see. It calls the
//! application layer and nothing below it.

pub mod auth;
pub mod convert;
pub mod limits;
pub mod services;
pub mod status;
