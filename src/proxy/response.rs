//! The body type of every response the proxy sends to clients, and the error type bodies fail
//! with.
//!
//! A leaf: the files that make responses (`pages`, `browser`, `inject`, `http`, `tracked`) and the
//! request body (`request_body`) share these types, and this file uses no other file of the
//! proxy.

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;

/// Any error, boxed.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the proxy sends to clients.
pub(crate) type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// A complete body made by the proxy itself (error pages, `101` responses).
pub(crate) fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}
