//! The DDI JSON, as hawkBit documents it (`hawkbit-ddi-api`'s `Ddi*` models) and as gooseBit
//! serves it: only the fields flashline reads, every other field ignored.
//!
//! Types are strict where flashline acts on a value (an artifact size is a `u64`, a handling
//! type one of three words) and lenient where servers differ: hashes are each optional
//! (gooseBit sends SHA-1 only), metadata and artifacts may be missing. A field of the wrong
//! type, a number too large, or a missing required field is a [`DdiError::Decode`] that
//! names the request; nothing here panics on what a server sends.

use super::{ActionId, DdiError};
use serde::Deserialize;
use std::time::Duration;

/// `GET {tenant}/controller/v1/{controllerId}`: the poll.
#[derive(Debug, Clone, Deserialize)]
pub struct ControllerBase {
    pub config: Config,
    #[serde(rename = "_links", default)]
    pub links: Links,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub polling: Polling,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Polling {
    /// "HH:MM:SS".
    pub sleep: String,
}

/// The poll's links: what hawkBit wants the device to do next.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Links {
    #[serde(rename = "deploymentBase")]
    pub deployment_base: Option<Link>,
    #[serde(rename = "cancelAction")]
    pub cancel_action: Option<Link>,
    #[serde(rename = "configData")]
    pub config_data: Option<Link>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub href: String,
}

/// `GET …/deploymentBase/{actionId}`.
#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentBase {
    /// The action id, as a decimal string.
    pub id: String,
    pub deployment: DeploymentSpec,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DeploymentSpec {
    pub download: Option<Handling>,
    pub update: Option<Handling>,
    #[serde(rename = "maintenanceWindow")]
    pub maintenance_window: Option<MaintenanceWindow>,
    pub chunks: Vec<Chunk>,
}

/// `skip` (not yet), `attempt` (when convenient), `forced` (now).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Handling {
    Skip,
    Attempt,
    Forced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaintenanceWindow {
    Available,
    Unavailable,
}

/// One software module of the distribution set.
#[derive(Debug, Clone, Deserialize)]
pub struct Chunk {
    pub part: String,
    pub version: String,
    pub name: String,
    #[serde(default)]
    pub artifacts: Vec<Artifact>,
    /// The module's metadata marked "target visible".
    #[serde(default)]
    pub metadata: Vec<Metadata>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Artifact {
    pub filename: String,
    #[serde(default)]
    pub hashes: Hashes,
    pub size: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Hashes {
    pub md5: Option<String>,
    pub sha1: Option<String>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub key: String,
    pub value: String,
}

/// `GET …/cancelAction/{actionId}`.
#[derive(Debug, Clone, Deserialize)]
pub struct CancelBase {
    pub id: String,
    #[serde(rename = "cancelAction")]
    pub cancel_action: CancelAction,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CancelAction {
    /// The action to cancel, as a decimal string.
    #[serde(rename = "stopId")]
    pub stop_id: String,
}

/// Parses a JSON answer, naming `what` in the error.
pub fn parse<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, DdiError> {
    serde_json::from_slice(body).map_err(|e| DdiError::Decode {
        what: what.to_string(),
        detail: e.to_string(),
    })
}

/// hawkBit's poll interval, "HH:MM:SS" (hours 00–99, minutes and seconds 00–59).
pub fn parse_sleep(what: &str, text: &str) -> Result<Duration, DdiError> {
    let bad = || DdiError::Decode {
        what: what.to_string(),
        detail: format!("polling sleep {text:?} is not HH:MM:SS"),
    };
    let fields: Vec<&str> = text.split(':').collect();
    let [h, m, s] = fields.as_slice() else {
        return Err(bad());
    };
    let number = |field: &str, max: u64| {
        (field.len() == 2 && field.bytes().all(|b| b.is_ascii_digit()))
            .then(|| field.parse::<u64>().ok())
            .flatten()
            .filter(|&n| n <= max)
    };
    match (number(h, 99), number(m, 59), number(s, 59)) {
        (Some(h), Some(m), Some(s)) => Ok(Duration::from_secs(h * 3600 + m * 60 + s)),
        _ => Err(bad()),
    }
}

/// A decimal action id as hawkBit writes it ("8"): digits only, within `u64`.
pub fn parse_action_id(what: &str, text: &str) -> Result<ActionId, DdiError> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DdiError::Decode {
            what: what.to_string(),
            detail: format!("{text:?} is not an action id"),
        });
    }
    text.parse().map(ActionId).map_err(|_| DdiError::Decode {
        what: what.to_string(),
        detail: format!("{text:?} is not an action id"),
    })
}

/// The action id in a link such as
/// `https://host/TENANT/controller/v1/ID/deploymentBase/5?c=-2127183556`: the path segment
/// after `kind` (`deploymentBase`, `cancelAction`). The query (hawkBit's cache buster) and
/// the host are not used: flashline builds its own URLs on the configured server, so a
/// link cannot send the token elsewhere.
pub fn action_in_link(what: &str, href: &str, kind: &str) -> Result<ActionId, DdiError> {
    let path = href.split(['?', '#']).next().unwrap_or_default();
    let mut segments = path.split('/').skip_while(|s| *s != kind);
    match (segments.next(), segments.next()) {
        (Some(_), Some(id)) => parse_action_id(what, id),
        _ => Err(DdiError::Decode {
            what: what.to_string(),
            detail: format!("the {kind} link {href:?} names no action"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAWKBIT_POLL: &str = include_str!("../../../tests/data/ddi/hawkbit-controller-base.json");
    const HAWKBIT_DEPLOYMENT: &str =
        include_str!("../../../tests/data/ddi/hawkbit-deployment-base.json");
    const GOOSEBIT_POLL: &str =
        include_str!("../../../tests/data/ddi/goosebit-controller-base-registration.json");
    const GOOSEBIT_DEPLOYMENT: &str =
        include_str!("../../../tests/data/ddi/goosebit-deployment-base.json");

    #[test]
    fn hawkbit_documented_poll() {
        let poll: ControllerBase = parse("poll", HAWKBIT_POLL.as_bytes()).unwrap();
        assert_eq!(
            parse_sleep("poll", &poll.config.polling.sleep).unwrap(),
            Duration::from_secs(12 * 3600)
        );
        let link = poll.links.deployment_base.unwrap();
        assert_eq!(
            action_in_link("poll", &link.href, "deploymentBase").unwrap(),
            ActionId(5)
        );
        assert!(poll.links.config_data.is_some());
        assert!(poll.links.cancel_action.is_none());
    }

    #[test]
    fn hawkbit_documented_deployment() {
        let base: DeploymentBase = parse("deploymentBase", HAWKBIT_DEPLOYMENT.as_bytes()).unwrap();
        assert_eq!(parse_action_id("d", &base.id).unwrap(), ActionId(8));
        let spec = &base.deployment;
        assert_eq!(spec.update, Some(Handling::Forced));
        assert_eq!(spec.maintenance_window, Some(MaintenanceWindow::Available));
        assert_eq!(spec.chunks.len(), 3);
        assert_eq!(spec.chunks[0].artifacts[0].size, Some(13));
        assert_eq!(
            spec.chunks[0].artifacts[0].hashes.sha256.as_deref(),
            Some("b3a04740a19e36057ccf258701922f3cd2f1a880536be53a3ca8d50f6b615975")
        );
        assert_eq!(spec.chunks[2].metadata[0].key, "aMetadataKey");
    }

    #[test]
    fn goosebit_observed_answers() {
        let poll: ControllerBase = parse("poll", GOOSEBIT_POLL.as_bytes()).unwrap();
        assert_eq!(
            parse_sleep("poll", &poll.config.polling.sleep).unwrap(),
            Duration::from_secs(10)
        );
        assert!(poll.links.config_data.is_some() && poll.links.deployment_base.is_none());
        let base: DeploymentBase = parse("deploymentBase", GOOSEBIT_DEPLOYMENT.as_bytes()).unwrap();
        let artifact = &base.deployment.chunks[0].artifacts[0];
        assert_eq!(artifact.size, Some(512));
        assert!(artifact.hashes.sha256.is_none() && artifact.hashes.md5.is_none());
        assert!(artifact.hashes.sha1.is_some());
    }

    /// Sizes beyond 4 GiB, which the `hawkbit` crate's `u32` cannot hold.
    #[test]
    fn sizes_are_u64() {
        let json = HAWKBIT_DEPLOYMENT.replacen("\"size\" : 13", "\"size\" : 8589934592", 1);
        let base: DeploymentBase = parse("d", json.as_bytes()).unwrap();
        assert_eq!(base.deployment.chunks[0].artifacts[0].size, Some(8 << 30));
    }

    #[test]
    fn hostile_json_is_a_specific_error() {
        let cases = [
            // a size beyond u64, a negative size, a fractional size, a string size
            HAWKBIT_DEPLOYMENT.replacen("\"size\" : 13", "\"size\" : 1e30", 1),
            HAWKBIT_DEPLOYMENT.replacen("\"size\" : 13", "\"size\" : 99999999999999999999999", 1),
            HAWKBIT_DEPLOYMENT.replacen("\"size\" : 13", "\"size\" : -1", 1),
            HAWKBIT_DEPLOYMENT.replacen("\"size\" : 13", "\"size\" : 1.5", 1),
            HAWKBIT_DEPLOYMENT.replacen("\"size\" : 13", "\"size\" : \"13\"", 1),
            // a missing required field, an unknown handling word, chunks of the wrong type
            HAWKBIT_DEPLOYMENT.replacen("\"part\" : \"jvm\",", "", 1),
            HAWKBIT_DEPLOYMENT.replacen("\"update\" : \"forced\"", "\"update\" : \"now\"", 1),
            r#"{"id":"8","deployment":{"chunks":{}}}"#.to_string(),
            r#"{"id":"8"}"#.to_string(),
            "[".repeat(100_000),
            String::new(),
        ];
        for json in &cases {
            match parse::<DeploymentBase>("deploymentBase", json.as_bytes()) {
                Err(DdiError::Decode { what, .. }) => assert_eq!(what, "deploymentBase"),
                other => panic!("{json:.80}: {other:?}"),
            }
        }
    }

    #[test]
    fn sleep_and_action_ids() {
        assert_eq!(
            parse_sleep("p", "00:01:05").unwrap(),
            Duration::from_secs(65)
        );
        for bad in [
            "",
            "1:00:00",
            "00:60:00",
            "00:00:60",
            "-1:00:00",
            "00:00",
            "+0:00:00",
            "00:00:00:00",
            "٠٠:٠٠:٠٠",
        ] {
            assert!(parse_sleep("p", bad).is_err(), "{bad}");
        }
        assert_eq!(
            action_in_link(
                "p",
                "http://h/T/controller/v1/x/cancelAction/11",
                "cancelAction"
            )
            .unwrap(),
            ActionId(11)
        );
        for bad in [
            "http://h/T/controller/v1/x/deploymentBase/-1",
            "http://h/T/controller/v1/x/deploymentBase/",
            "http://h/T/controller/v1/x/deploymentBase",
            "http://h/T/controller/v1/x/deploymentBase/99999999999999999999",
            "http://h/T/controller/v1/x/deploymentBase/1e3",
        ] {
            assert!(action_in_link("p", bad, "deploymentBase").is_err(), "{bad}");
        }
    }
}
