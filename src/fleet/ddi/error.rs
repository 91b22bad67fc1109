//! What can go wrong talking to a rollout server. No variant carries a token: server text
//! that goes into an error is scrubbed of the secret first.

use super::ActionId;
use std::time::Duration;

/// An error from the DDI layer.
#[derive(Debug, thiserror::Error)]
pub enum DdiError {
    /// The server URL cannot carry the DDI paths.
    #[error("the hawkBit URL {url} cannot be used: {why}")]
    BadBaseUrl { url: String, why: &'static str },
    /// The tenant is empty or has characters a URL path segment would have to escape.
    #[error("the hawkBit tenant {0:?} is not a plain name (letters, digits, '-', '_', '.')")]
    BadTenant(String),
    /// The token has characters an HTTP header cannot carry.
    #[error("the hawkBit token has characters an HTTP header cannot carry")]
    BadToken,
    /// The HTTP client or its runtime could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
    /// No answer within the timeout.
    #[error("{what}: no answer within {} s", timeout.as_secs_f32())]
    Timeout { what: String, timeout: Duration },
    /// The connection failed (refused, reset, TLS …).
    #[error("{what}: {source}")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// 401 or 403: the token is wrong, or its kind of authentication is off for the tenant.
    #[error(
        "{what}: the server refused the credentials (HTTP {status}); check the token file and \
         that the tenant allows this kind of token (hawkBit: System Config → Authentication)"
    )]
    Unauthorized { what: String, status: u16 },
    /// 429: a hawkBit quota (such as the 50 messages of one status) was exceeded.
    #[error("{what}: the server refused the request as over its quota (HTTP 429)")]
    TooManyRequests { what: String },
    /// Any other status that is not success.
    #[error("{what}: HTTP {status}{}", if body.is_empty() { String::new() } else { format!(": {body}") })]
    Status {
        what: String,
        status: u16,
        /// The start of the server's answer, scrubbed of the token.
        body: String,
    },
    /// The answer is larger than any answer to this request should be.
    #[error("{what}: the answer is larger than {limit} bytes")]
    TooLarge { what: String, limit: usize },
    /// The answer is not the JSON this request gets.
    #[error("{what}: unexpected answer: {detail}")]
    Decode { what: String, detail: String },
    /// hawkBit offers an action, but its distribution set names no flashline package. The
    /// station closes the action as failed, so it does not come back.
    #[error("action {action} names no flashline package: {why}")]
    NoPackage { action: ActionId, why: String },
    /// The action is closed or no longer exists on the server.
    #[error("action {action} is no longer open on the server")]
    ActionGone { action: ActionId },
    /// Feedback or configData hawkBit would refuse; nothing was sent.
    #[error("not sent: {0}")]
    Invalid(String),
}
