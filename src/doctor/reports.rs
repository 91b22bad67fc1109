//! Repeated disconnects in flashline's own job reports: a device that drops at a different
//! step each time points at the cable, hub or port; one that drops at the same step each
//! time points at the device itself.
//!
//! A report records the image being written when the job failed (its status `failed`), not
//! the byte offset, so "where" is that image (or "before writing" when none had started).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::{Code, Finding, Severity};

/// Reports larger than this are not flashline's and are skipped unread.
const MAX_REPORT_BYTES: u64 = 4 << 20;
/// Only the newest reports matter (their names start with the job's start time).
const NEWEST_REPORTS: usize = 500;
/// How many disconnects of one device make a pattern.
const REPEATED: usize = 2;

/// One disconnect: the device's serial, and the step it happened at.
fn disconnect(report: &Value) -> Option<(String, String)> {
    if report.get("outcome")?.as_str()? != "device-error" {
        return None;
    }
    let error = report.get("error")?.as_str()?.to_ascii_lowercase();
    if !error.contains("disconnect") {
        return None;
    }
    let serial = report
        .pointer("/device/serial")
        .and_then(Value::as_str)
        .unwrap_or("unknown serial")
        .to_string();
    let step = report
        .get("images")
        .and_then(Value::as_array)
        .and_then(|images| {
            images.iter().find_map(|i| {
                let partition = i.get("partition")?.as_str()?;
                (i.get("status")?.as_str()? == "failed").then(|| format!("writing {partition}"))
            })
        })
        .unwrap_or_else(|| "before writing".to_string());
    Some((serial, step))
}

/// Disconnect patterns per device in the reports folder `dir`.
pub fn check(dir: &Path) -> Vec<Finding> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let newest = files.len().saturating_sub(NEWEST_REPORTS);
    let mut steps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for path in &files[newest..] {
        if std::fs::metadata(path).map_or(true, |m| m.len() > MAX_REPORT_BYTES) {
            continue;
        }
        let Some(report) = std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        if let Some((serial, step)) = disconnect(&report) {
            steps.entry(serial).or_default().push(step);
        }
    }
    steps
        .into_iter()
        .filter(|(_, steps)| steps.len() >= REPEATED)
        .map(|(serial, steps)| {
            let mut distinct = steps.clone();
            distinct.sort();
            distinct.dedup();
            if distinct.len() == 1 {
                Finding {
                    code: Code::DisconnectsSameStep,
                    severity: Severity::Warning,
                    what: format!(
                        "device {serial} disconnected in {} jobs, each time {}: the device \
                         itself drops at that step",
                        steps.len(),
                        distinct[0]
                    ),
                    fix: format!(
                        "another cable will not help: check the device at that step (its battery, \
                         its boot state, the image it is given), and send the reports in {} \
                         with the device",
                        dir.display()
                    ),
                }
            } else {
                Finding {
                    code: Code::DisconnectsVary,
                    severity: Severity::Warning,
                    what: format!(
                        "device {serial} disconnected in {} jobs at different steps ({}): the \
                         link drops, not the device",
                        steps.len(),
                        distinct.join(", ")
                    ),
                    fix: "use a short, known-good data cable straight into a port on the \
                          computer itself (no hub, no front-panel port), then flash again"
                        .into(),
                }
            }
        })
        .collect()
}
