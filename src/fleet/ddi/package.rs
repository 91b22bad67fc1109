//! Which flashline package a deployment names.
//!
//! A distribution set names the package by its TUF target name and SHA-256. Two places can
//! carry them; flashline reads them in this order:
//!
//! 1. **Chunk metadata** (the way to set up hawkBit for flashline): a software module with
//!    the target-visible metadata `tuf-target` (the TUF target name) and `tuf-sha256` (its
//!    SHA-256 in hex), and for the size either `tuf-length` (decimal bytes) or an artifact
//!    of the module whose file name is the target name. The module needs no artifact: the
//!    bytes come from the TUF repository, so hawkBit stores no firmware and decides only who
//!    gets which package when.
//! 2. **The artifact itself**, when no module has that metadata: the distribution set must
//!    then hold exactly one artifact with a SHA-256 (hawkBit storing the package file under
//!    its TUF target name). Its file name is the target name, its SHA-256 and size those of
//!    the package. MD5 and SHA-1 are not needed.
//!
//! Anything else is refused with [`DdiError::NoPackage`]: two modules with `tuf-target`, several
//! candidate artifacts, or none with a SHA-256. gooseBit is such a server: it publishes one
//! SWU artifact with a SHA-1 and no metadata, so its deployments name no flashline package
//! (the station closes such an action as failed, with the reason in the details).
//!
//! The name and hash only select; they are not trusted. The station fetches the target
//! through TUF, which checks length and hash against signed metadata, flashes it only if that
//! hash equals the one named here, and flashline's own package check still runs.

use super::wire::{Chunk, DeploymentBase};
use super::{ActionId, DdiError, PackageRef};

/// Chunk metadata key: the TUF target name.
pub const KEY_TARGET: &str = "tuf-target";
/// Chunk metadata key: the target's SHA-256, hex.
pub const KEY_SHA256: &str = "tuf-sha256";
/// Chunk metadata key: the target's length in bytes, decimal.
pub const KEY_LENGTH: &str = "tuf-length";

/// The longest TUF target name accepted (TUF sets no limit; file systems do).
const MAX_TARGET_NAME: usize = 1024;

/// The package `base` names, or why it names none.
pub fn package_ref(action: ActionId, base: &DeploymentBase) -> Result<PackageRef, DdiError> {
    let refuse = |why: String| DdiError::NoPackage { action, why };
    let chunks = &base.deployment.chunks;
    let named: Vec<&Chunk> = chunks
        .iter()
        .filter(|c| c.metadata.iter().any(|m| m.key == KEY_TARGET))
        .collect();
    let package = match named.as_slice() {
        [chunk] => from_metadata(chunk).map_err(refuse)?,
        [] => from_artifact(chunks).map_err(refuse)?,
        more => {
            return Err(refuse(format!(
                "{} software modules carry {KEY_TARGET}; a flashline distribution set names one package",
                more.len()
            )))
        }
    };
    check_target_name(&package.tuf_target).map_err(refuse)?;
    Ok(package)
}

fn from_metadata(chunk: &Chunk) -> Result<PackageRef, String> {
    let value = |key: &str| -> Result<Option<&str>, String> {
        let mut values = chunk.metadata.iter().filter(|m| m.key == key);
        match (values.next(), values.next()) {
            (_, Some(_)) => Err(format!("module {:?} has {key} twice", chunk.name)),
            (first, None) => Ok(first.map(|m| m.value.as_str())),
        }
    };
    let target = value(KEY_TARGET)?.unwrap_or_default().to_string();
    let sha256 = value(KEY_SHA256)?.ok_or_else(|| {
        format!(
            "module {:?} has {KEY_TARGET} but no {KEY_SHA256}",
            chunk.name
        )
    })?;
    let sha256 =
        sha256_hex(sha256).ok_or_else(|| format!("{KEY_SHA256} {sha256:?} is not a SHA-256"))?;
    let size = match value(KEY_LENGTH)? {
        Some(text) => {
            decimal(text).ok_or_else(|| format!("{KEY_LENGTH} {text:?} is not a length"))?
        }
        None => chunk
            .artifacts
            .iter()
            .find(|a| a.filename == target)
            .and_then(|a| a.size)
            .ok_or_else(|| {
                format!(
                    "module {:?} has no {KEY_LENGTH} and no artifact named {target:?}",
                    chunk.name
                )
            })?,
    };
    Ok(PackageRef {
        tuf_target: target,
        sha256,
        size,
    })
}

fn from_artifact(chunks: &[Chunk]) -> Result<PackageRef, String> {
    let all = chunks.iter().flat_map(|c| &c.artifacts);
    let hashed: Vec<_> = all.clone().filter(|a| a.hashes.sha256.is_some()).collect();
    let artifact = match hashed.as_slice() {
        [one] => *one,
        [] => {
            return Err(format!(
                "no module has {KEY_TARGET} metadata and no artifact has a SHA-256 ({} artifacts)",
                all.count()
            ))
        }
        more => {
            return Err(format!(
                "no module has {KEY_TARGET} metadata and {} artifacts have a SHA-256; which one is the package is not clear",
                more.len()
            ))
        }
    };
    let sha256 = artifact.hashes.sha256.as_deref().unwrap_or_default();
    Ok(PackageRef {
        tuf_target: artifact.filename.clone(),
        sha256: sha256_hex(sha256)
            .ok_or_else(|| format!("artifact SHA-256 {sha256:?} is not a SHA-256"))?,
        size: artifact
            .size
            .ok_or_else(|| format!("artifact {:?} has no size", artifact.filename))?,
    })
}

/// 64 hex digits, returned in lower case.
fn sha256_hex(text: &str) -> Option<String> {
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| text.to_ascii_lowercase())
}

/// Digits only, within `u64`.
fn decimal(text: &str) -> Option<u64> {
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// A name the repository can look up: not empty, bounded, no control characters. Whether
/// the target exists is for the signed TUF metadata to say.
fn check_target_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("the TUF target name is empty".into())
    } else if name.len() > MAX_TARGET_NAME {
        Err(format!(
            "the TUF target name is longer than {MAX_TARGET_NAME} bytes"
        ))
    } else if name.chars().any(char::is_control) {
        Err(format!(
            "the TUF target name {name:?} has control characters"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::ddi::wire::parse;

    const HAWKBIT_DEPLOYMENT: &str =
        include_str!("../../../tests/data/ddi/hawkbit-deployment-base.json");
    const GOOSEBIT_DEPLOYMENT: &str =
        include_str!("../../../tests/data/ddi/goosebit-deployment-base.json");
    const SHA: &str = "5010FBC2769BFC655D15AA9A883703D5B19A320732D37F70703AB3E3B416A602";

    fn deployment(chunks: serde_json::Value) -> DeploymentBase {
        let json =
            serde_json::json!({"id": "10", "deployment": {"update": "forced", "chunks": chunks}});
        parse("d", json.to_string().as_bytes()).unwrap()
    }

    fn why(result: Result<PackageRef, DdiError>) -> String {
        match result {
            Err(DdiError::NoPackage { action, why }) => {
                assert_eq!(action, ActionId(10));
                why
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn from_chunk_metadata_without_artifacts() {
        let d = deployment(serde_json::json!([{
            "part": "firmware", "version": "1.2.3", "name": "modem-x",
            "metadata": [
                {"key": "tuf-target", "value": "modem-x-1.2.3.flp"},
                {"key": "tuf-sha256", "value": SHA},
                {"key": "tuf-length", "value": "6442450944"},
            ]
        }]));
        assert_eq!(
            package_ref(ActionId(10), &d).unwrap(),
            PackageRef {
                tuf_target: "modem-x-1.2.3.flp".into(),
                sha256: SHA.to_ascii_lowercase(),
                size: 6 << 30,
            }
        );
    }

    #[test]
    fn metadata_size_from_the_artifact_of_the_same_name() {
        let d = deployment(serde_json::json!([{
            "part": "firmware", "version": "1", "name": "m",
            "artifacts": [{"filename": "p.flp", "size": 77, "hashes": {"sha1": "ab"}}],
            "metadata": [{"key": "tuf-target", "value": "p.flp"}, {"key": "tuf-sha256", "value": SHA}]
        }]));
        assert_eq!(package_ref(ActionId(10), &d).unwrap().size, 77);
    }

    #[test]
    fn from_the_one_artifact_with_only_a_sha256() {
        let d = deployment(serde_json::json!([{
            "part": "firmware", "version": "1", "name": "m",
            "artifacts": [{"filename": "p.flp", "size": 5_000_000_000u64, "hashes": {"sha256": SHA}}]
        }]));
        let package = package_ref(ActionId(10), &d).unwrap();
        assert_eq!(package.tuf_target, "p.flp");
        assert_eq!(package.size, 5_000_000_000);
    }

    #[test]
    fn unclear_or_missing_names_are_refused() {
        // hawkBit's documented example: six artifacts with SHA-256, metadata without tuf-target.
        let d: DeploymentBase = parse("d", HAWKBIT_DEPLOYMENT.as_bytes()).unwrap();
        assert!(why(package_ref(ActionId(10), &d)).contains("6 artifacts"));
        // gooseBit: one artifact, SHA-1 only.
        let d: DeploymentBase = parse("d", GOOSEBIT_DEPLOYMENT.as_bytes()).unwrap();
        assert!(why(package_ref(ActionId(10), &d)).contains("no artifact has a SHA-256"));

        let meta = |pairs: &[(&str, &str)]| {
            let metadata: Vec<_> = pairs
                .iter()
                .map(|(k, v)| serde_json::json!({"key": k, "value": v}))
                .collect();
            deployment(
                serde_json::json!([{"part": "f", "version": "1", "name": "m", "metadata": metadata}]),
            )
        };
        let cases = [
            (
                meta(&[("tuf-target", "p.flp"), ("tuf-length", "1")]),
                "no tuf-sha256",
            ),
            (
                meta(&[
                    ("tuf-target", "p.flp"),
                    ("tuf-sha256", "abc"),
                    ("tuf-length", "1"),
                ]),
                "not a SHA-256",
            ),
            (
                meta(&[("tuf-target", "p.flp"), ("tuf-sha256", SHA)]),
                "no tuf-length",
            ),
            (
                meta(&[
                    ("tuf-target", "p.flp"),
                    ("tuf-sha256", SHA),
                    ("tuf-length", "-1"),
                ]),
                "not a length",
            ),
            (
                meta(&[
                    ("tuf-target", "p.flp"),
                    ("tuf-sha256", SHA),
                    ("tuf-length", "18446744073709551616"),
                ]),
                "not a length",
            ),
            (
                meta(&[
                    ("tuf-target", "p.flp"),
                    ("tuf-target", "q.flp"),
                    ("tuf-sha256", SHA),
                    ("tuf-length", "1"),
                ]),
                "twice",
            ),
            (
                meta(&[("tuf-target", ""), ("tuf-sha256", SHA), ("tuf-length", "1")]),
                "empty",
            ),
            (
                meta(&[
                    ("tuf-target", "a\nb"),
                    ("tuf-sha256", SHA),
                    ("tuf-length", "1"),
                ]),
                "control",
            ),
        ];
        for (d, expected) in cases {
            let why = why(package_ref(ActionId(10), &d));
            assert!(why.contains(expected), "{why} (expected {expected})");
        }
        let two = deployment(serde_json::json!([
            {"part": "f", "version": "1", "name": "a", "metadata": [{"key": "tuf-target", "value": "a"}]},
            {"part": "f", "version": "1", "name": "b", "metadata": [{"key": "tuf-target", "value": "b"}]},
        ]));
        assert!(why(package_ref(ActionId(10), &two)).contains("2 software modules"));
    }
}
