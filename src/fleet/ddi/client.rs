//! [`HawkbitDdi`]: the [`Rollouts`] calls over HTTP(S), to hawkBit or any server that speaks
//! its DDI API.
//!
//! - Every request has a timeout (the whole exchange, body included), and every answer is
//!   read only up to a limit sized for what that request returns, before it is parsed.
//! - URLs are built from the configured server, never taken from a link in an answer, so an
//!   answer cannot send the token to another host; redirects are not followed either.
//! - The token goes only into the `Authorization` header (marked sensitive); server text that
//!   goes into an error is scrubbed of it, and the client prints it as `[redacted]`.
//! - Nothing is retried here: hawkBit records every feedback POST as a status, so a retry
//!   after a lost answer could count a failure twice. The station decides when to try again.
//!
//! The library is synchronous at its surface (the station runner is thread-based): the client
//! owns a current-thread tokio runtime and blocks on it. Calls may come from several threads
//! at once; they must not come from inside another async runtime.

use super::feedback::FeedbackBody;
use super::wire::{self, ControllerBase, DeploymentBase, Handling, MaintenanceWindow};
use super::{package, ActionId, DdiError, Deployment, Feedback, Poll, Rollouts, TargetId};
use crate::fleet::secret::Secret;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// The time one request may take, connection to last byte of the answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

/// The largest poll or cancel answer read (a few hundred bytes in practice).
const SMALL_ANSWER: usize = 64 * 1024;
/// The largest deploymentBase answer read (a distribution set of many modules and artifacts).
const DEPLOYMENT_ANSWER: usize = 1024 * 1024;
/// How much of an error answer is kept for the error message.
const ERROR_SNIPPET: usize = 300;

/// hawkBit's limits on controller attributes (`Target.CONTROLLER_ATTRIBUTE_MAX_KEY_SIZE`,
/// `…_MAX_VALUE_SIZE`, `maxAttributeEntriesPerTarget`), in Java characters.
const MAX_ATTRIBUTE_KEY: usize = 128;
const MAX_ATTRIBUTE_VALUE: usize = 128;
const MAX_ATTRIBUTES: usize = 100;

/// How the station authenticates to the DDI API (hawkBit: System Config → Authentication).
#[derive(Debug, Clone)]
pub enum DdiAuth {
    /// `Authorization: GatewayToken …`: one token per tenant that acts for any target. What
    /// a station with many devices on its bench uses.
    GatewayToken(Secret),
    /// `Authorization: TargetToken …`: one target's own token, for single-device use.
    TargetToken(Secret),
    /// No `Authorization` header: a server with device authentication off (gooseBit's
    /// default), or mTLS at a reverse proxy.
    Anonymous,
}

impl DdiAuth {
    fn secret(&self) -> Option<&Secret> {
        match self {
            DdiAuth::GatewayToken(s) | DdiAuth::TargetToken(s) => Some(s),
            DdiAuth::Anonymous => None,
        }
    }

    fn header(&self) -> Result<Option<HeaderValue>, DdiError> {
        let (scheme, secret) = match self {
            DdiAuth::GatewayToken(s) => ("GatewayToken", s),
            DdiAuth::TargetToken(s) => ("TargetToken", s),
            DdiAuth::Anonymous => return Ok(None),
        };
        let token = secret.expose();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(DdiError::BadToken);
        }
        let mut value =
            HeaderValue::from_str(&format!("{scheme} {token}")).map_err(|_| DdiError::BadToken)?;
        value.set_sensitive(true);
        Ok(Some(value))
    }
}

/// A hawkBit DDI client for one tenant (see the module documentation).
#[derive(Debug)]
pub struct HawkbitDdi {
    base: Url,
    tenant: String,
    auth: DdiAuth,
    header: Option<HeaderValue>,
    timeout: Duration,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

impl HawkbitDdi {
    /// A gateway client: `base` is the server's root (`https://hawkbit.example.com/`, or a
    /// path prefix under it), `tenant` hawkBit's tenant (`DEFAULT` on a fresh server).
    pub fn new(base: Url, tenant: &str, gateway_token: Secret) -> Result<Self, DdiError> {
        Self::with_auth(
            base,
            tenant,
            DdiAuth::GatewayToken(gateway_token),
            DEFAULT_TIMEOUT,
        )
    }

    /// A client with any authentication and request timeout.
    pub fn with_auth(
        base: Url,
        tenant: &str,
        auth: DdiAuth,
        timeout: Duration,
    ) -> Result<Self, DdiError> {
        let bad = |why| DdiError::BadBaseUrl {
            url: base.to_string(),
            why,
        };
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("only http and https are spoken"));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(bad("it names no server"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("it has a query or fragment"));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad("credentials belong in the token file, not the URL"));
        }
        let plain_name = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                && s != "."
                && s != ".."
        };
        if !plain_name(tenant) {
            return Err(DdiError::BadTenant(tenant.to_string()));
        }
        let header = auth.header()?;
        if base.scheme() == "http" && header.is_some() && !is_loopback(&base) {
            tracing::warn!(
                server = %base,
                "the hawkBit token is sent over plain HTTP; use https outside a test bench"
            );
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DdiError::Setup(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DdiError::Setup(e.to_string()))?;
        Ok(HawkbitDdi {
            base,
            tenant: tenant.to_string(),
            auth,
            header,
            timeout,
            http,
            runtime,
        })
    }

    /// The deployment of `action` as the server describes it, or `None` if the server no
    /// longer has it open. [`Rollouts::poll`] reads the package from this; it is public for
    /// servers whose deployments name no flashline package (the artifacts are still listed).
    pub fn deployment_base(
        &self,
        target: &TargetId,
        action: ActionId,
    ) -> Result<Option<DeploymentBase>, DdiError> {
        self.runtime.block_on(self.get_deployment(target, action))
    }

    /// `{base}/{tenant}/controller/v1/{target}/{rest…}`.
    fn url(&self, target: &TargetId, rest: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments
                .pop_if_empty()
                .extend([self.tenant.as_str(), "controller", "v1", target.as_str()])
                .extend(rest);
        }
        url
    }

    /// One request; the answer's status and body (at most `limit` bytes).
    async fn exchange(
        &self,
        what: &str,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(StatusCode, Vec<u8>), DdiError> {
        tracing::debug!(%method, %url, "DDI request");
        let mut request = self.http.request(method, url);
        if let Some(header) = &self.header {
            request = request.header(AUTHORIZATION, header.clone());
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let mut response = request.send().await.map_err(|e| self.transport(what, e))?;
        let status = response.status();
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(DdiError::TooLarge {
                what: what.to_string(),
                limit,
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport(what, e))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(DdiError::TooLarge {
                    what: what.to_string(),
                    limit,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        tracing::debug!(status = status.as_u16(), bytes = bytes.len(), "DDI answer");
        Ok((status, bytes))
    }

    fn transport(&self, what: &str, e: reqwest::Error) -> DdiError {
        if e.is_timeout() {
            DdiError::Timeout {
                what: what.to_string(),
                timeout: self.timeout,
            }
        } else {
            DdiError::Transport {
                what: what.to_string(),
                source: e,
            }
        }
    }

    /// The error for a status that is not success.
    fn status_error(&self, what: &str, status: StatusCode, body: &[u8]) -> DdiError {
        let what = what.to_string();
        match status.as_u16() {
            401 | 403 => DdiError::Unauthorized {
                what,
                status: status.as_u16(),
            },
            429 => DdiError::TooManyRequests { what },
            code => {
                let text = String::from_utf8_lossy(body);
                let text = match self.auth.secret() {
                    Some(secret) => scrub(&text, secret),
                    None => text.into_owned(),
                };
                let snippet: String = text
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(ERROR_SNIPPET)
                    .collect();
                DdiError::Status {
                    what,
                    status: code,
                    body: snippet,
                }
            }
        }
    }

    async fn controller_base(&self, target: &TargetId) -> Result<ControllerBase, DdiError> {
        let what = format!("poll of {target}");
        let (status, body) = self
            .exchange(
                &what,
                Method::GET,
                self.url(target, &[]),
                None,
                SMALL_ANSWER,
            )
            .await?;
        if !status.is_success() {
            return Err(self.status_error(&what, status, &body));
        }
        wire::parse(&what, &body)
    }

    async fn get_deployment(
        &self,
        target: &TargetId,
        action: ActionId,
    ) -> Result<Option<DeploymentBase>, DdiError> {
        let what = format!("deployment {action} of {target}");
        let url = self.url(target, &["deploymentBase", &action.to_string()]);
        let (status, body) = self
            .exchange(&what, Method::GET, url, None, DEPLOYMENT_ANSWER)
            .await?;
        if matches!(status, StatusCode::NOT_FOUND | StatusCode::GONE) {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.status_error(&what, status, &body));
        }
        // gooseBit answers `null` for a deployment it no longer offers (a paused rollout).
        let Some(base) = wire::parse::<Option<DeploymentBase>>(&what, &body)? else {
            return Ok(None);
        };
        let answered = wire::parse_action_id(&what, &base.id)?;
        if answered != action {
            return Err(DdiError::Decode {
                what,
                detail: format!("asked for action {action}, the answer is for action {answered}"),
            });
        }
        Ok(Some(base))
    }

    /// The deployment the poll links to, if it may be installed now.
    async fn offered(
        &self,
        target: &TargetId,
        action: ActionId,
    ) -> Result<Option<Deployment>, DdiError> {
        let Some(base) = self.get_deployment(target, action).await? else {
            return Ok(None);
        };
        let spec = &base.deployment;
        if spec.update == Some(Handling::Skip)
            || spec.maintenance_window == Some(MaintenanceWindow::Unavailable)
        {
            tracing::debug!(%target, %action, "deployment not to be installed yet");
            return Ok(None);
        }
        Ok(Some(Deployment {
            action,
            package: package::package_ref(action, &base)?,
            forced: spec.update == Some(Handling::Forced),
        }))
    }

    async fn post_feedback(
        &self,
        target: &TargetId,
        action: ActionId,
        kind: &str,
        body: &FeedbackBody,
    ) -> Result<(), DdiError> {
        let what = format!("{kind} feedback for action {action} of {target}");
        let url = self.url(target, &[kind, &action.to_string(), "feedback"]);
        let json = serde_json::to_vec(body).map_err(|e| DdiError::Invalid(e.to_string()))?;
        let (status, answer) = self
            .exchange(&what, Method::POST, url, Some(json), SMALL_ANSWER)
            .await?;
        match status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(DdiError::ActionGone { action }),
            s => Err(self.status_error(&what, s, &answer)),
        }
    }
}

impl Rollouts for HawkbitDdi {
    fn poll(&self, target: &TargetId) -> Result<Poll, DdiError> {
        self.runtime.block_on(async {
            let what = format!("poll of {target}");
            let base = self.controller_base(target).await?;
            let sleep = wire::parse_sleep(&what, &base.config.polling.sleep)?;
            let links = &base.links;
            let cancel = links
                .cancel_action
                .as_ref()
                .map(|l| wire::action_in_link(&what, &l.href, "cancelAction"))
                .transpose()?;
            let deployment = match &links.deployment_base {
                Some(link) => {
                    let action = wire::action_in_link(&what, &link.href, "deploymentBase")?;
                    self.offered(target, action).await?
                }
                None => None,
            };
            Ok(Poll {
                sleep,
                deployment,
                cancel,
                wants_config: links.config_data.is_some(),
            })
        })
    }

    fn put_config(
        &self,
        target: &TargetId,
        data: &BTreeMap<String, String>,
    ) -> Result<(), DdiError> {
        check_attributes(data)?;
        let body = config_body(data);
        self.runtime.block_on(async {
            let what = format!("configData of {target}");
            let url = self.url(target, &["configData"]);
            let (status, answer) = self
                .exchange(
                    &what,
                    Method::PUT,
                    url,
                    Some(body.to_string().into_bytes()),
                    SMALL_ANSWER,
                )
                .await?;
            if status.is_success() {
                Ok(())
            } else {
                Err(self.status_error(&what, status, &answer))
            }
        })
    }

    fn still_wanted(&self, target: &TargetId, action: &ActionId) -> Result<bool, DdiError> {
        self.runtime.block_on(async {
            let what = format!("poll of {target}");
            let links = self.controller_base(target).await?.links;
            let linked = |link: &Option<wire::Link>, kind| {
                link.as_ref()
                    .map(|l| wire::action_in_link(&what, &l.href, kind))
                    .transpose()
            };
            let cancelling = linked(&links.cancel_action, "cancelAction")? == Some(*action);
            let open = linked(&links.deployment_base, "deploymentBase")? == Some(*action);
            let wanted = open && !cancelling;
            if !wanted {
                tracing::info!(%target, %action, cancelling, open, "action no longer wanted");
            }
            Ok(wanted)
        })
    }

    fn feedback(
        &self,
        target: &TargetId,
        action: &ActionId,
        feedback: &Feedback,
    ) -> Result<(), DdiError> {
        let body = FeedbackBody::new(*action, feedback)?;
        self.runtime
            .block_on(self.post_feedback(target, *action, "deploymentBase", &body))
    }

    fn ack_cancel(&self, target: &TargetId, action: &ActionId) -> Result<(), DdiError> {
        let body = FeedbackBody::cancel_accepted(*action);
        self.runtime
            .block_on(self.post_feedback(target, *action, "cancelAction", &body))
    }
}

/// `text` (from the server: an error body may echo the request's headers) with the token
/// replaced by `[redacted]`, before it goes into an error.
fn scrub(text: &str, secret: &Secret) -> String {
    match secret.expose() {
        "" => text.to_string(),
        token => text.replace(token, &secret.to_string()),
    }
}

/// Whether `url` names this machine (a test bench), where plain HTTP carries no risk.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The body of `PUT …/configData`: the attributes, merged into what the server has.
fn config_body(data: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::json!({ "mode": "merge", "data": data })
}

/// configData that hawkBit would refuse (it answers 400), refused before sending.
fn check_attributes(data: &BTreeMap<String, String>) -> Result<(), DdiError> {
    let java_len = |s: &str| s.encode_utf16().count();
    if data.is_empty() {
        return Err(DdiError::Invalid("configData without attributes".into()));
    }
    if data.len() > MAX_ATTRIBUTES {
        return Err(DdiError::Invalid(format!(
            "{} attributes (hawkBit keeps at most {MAX_ATTRIBUTES})",
            data.len()
        )));
    }
    for (key, value) in data {
        if key.is_empty() || java_len(key) > MAX_ATTRIBUTE_KEY {
            return Err(DdiError::Invalid(format!(
                "attribute name {key:?} (1 to {MAX_ATTRIBUTE_KEY} characters)"
            )));
        }
        if java_len(value) > MAX_ATTRIBUTE_VALUE {
            return Err(DdiError::Invalid(format!(
                "attribute {key:?} is longer than {MAX_ATTRIBUTE_VALUE} characters"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// hawkBit's documented configData example is what flashline sends for the same data.
    #[test]
    fn config_body_is_hawkbits_documented_shape() {
        let sample: serde_json::Value = serde_json::from_str(include_str!(
            "../../../tests/data/ddi/hawkbit-config-data.json"
        ))
        .unwrap();
        let data: BTreeMap<String, String> =
            serde_json::from_value(sample["data"].clone()).unwrap();
        assert_eq!(config_body(&data), sample);
        check_attributes(&data).unwrap();
    }

    #[test]
    fn base_urls_and_tenants() {
        let ddi = |url: &str, tenant: &str| {
            HawkbitDdi::with_auth(
                Url::parse(url).unwrap(),
                tenant,
                DdiAuth::Anonymous,
                DEFAULT_TIMEOUT,
            )
        };
        let id = TargetId::derive(b"s", "serial", None);
        let prefixed = ddi("https://example.com/hawkbit/", "DEFAULT").unwrap();
        assert_eq!(
            prefixed.url(&id, &["deploymentBase", "5"]).as_str(),
            format!("https://example.com/hawkbit/DEFAULT/controller/v1/{id}/deploymentBase/5")
        );
        for url in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/?a=1",
        ] {
            assert!(
                matches!(ddi(url, "DEFAULT"), Err(DdiError::BadBaseUrl { .. })),
                "{url}"
            );
        }
        for tenant in ["", "..", "a/b", "a b"] {
            assert!(
                matches!(
                    ddi("https://example.com/", tenant),
                    Err(DdiError::BadTenant(_))
                ),
                "{tenant:?}"
            );
        }
        let token = |t: &str| {
            HawkbitDdi::with_auth(
                Url::parse("https://example.com/").unwrap(),
                "DEFAULT",
                DdiAuth::GatewayToken(Secret::new(t)),
                DEFAULT_TIMEOUT,
            )
        };
        assert!(matches!(token("with space"), Err(DdiError::BadToken)));
        assert!(matches!(token("line\nbreak"), Err(DdiError::BadToken)));
        assert!(token("3nkswAZhX81oDtktq0FF9Pn0Tc0UGXPW").is_ok());
    }
}
