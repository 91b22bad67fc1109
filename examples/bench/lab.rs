//! Figure 10 (issue 16): a full flat build written to the same EDL USB gadget by
//! `flashline recover` and by Debian's `qdl`, in the virtual USB lab (USB lab scenario 11,
//! which alternates the two, three runs each, checks the LUN after every run and prints
//! one `EDL-QDL-SPEED` line with the raw numbers).
//!
//! The lab is a QEMU guest under TCG: both hosts and the device share one emulated CPU, so
//! the ratio says how much work each host makes per byte, not what a real USB bus allows.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::figures::Figure;
use crate::run;

const WHAT: &str = "EDL through the USB lab (QEMU guest, dummy_hcd): the same flat build on \
                    the same EDL gadget, flashline recover / Debian `qdl` wall time";
const TARGET: &str = "≤ 1.0";

fn not_measured(why: String) -> Figure {
    Figure {
        number: 10,
        what: WHAT.into(),
        measured: "n/a".into(),
        target: TARGET.into(),
        met: None,
        details: vec![why],
    }
}

/// Runs USB lab scenario 11 and reports its `EDL-QDL-SPEED` line; says why when the lab
/// cannot run here instead of failing the benchmark.
pub fn edl_versus_qdl() -> Result<Figure> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let missing: Vec<&str> = ["qemu-system-x86_64", "qdl", "busybox", "cpio"]
        .into_iter()
        .filter(|program| run::which(program).is_none())
        .collect();
    if !missing.is_empty() {
        return Ok(not_measured(format!(
            "the USB lab cannot run here: {} not installed (apt-get install \
             qemu-system-x86 busybox-static cpio kmod qdl)",
            missing.join(", ")
        )));
    }
    eprintln!("figure 10: USB lab scenario 11 (builds a static flashline the first time)");
    let out = Command::new(root.join("tests/usb-lab/run"))
        .arg("11")
        .current_dir(root)
        .output()
        .context("cannot run tests/usb-lab/run")?;
    let console = root.join("target/usb-lab/console.log");
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("EDL-QDL-SPEED ").map(|(_, rest)| rest.trim()));
    let Some(line) = line.filter(|_| out.status.success()) else {
        let tail: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .chain(String::from_utf8_lossy(&out.stderr).lines())
            .map(str::to_string)
            .collect();
        let tail = tail[tail.len().saturating_sub(12)..].join(" / ");
        return Ok(not_measured(format!(
            "USB lab scenario 11 did not pass (console log {}): {tail}",
            console.display()
        )));
    };
    let fields: BTreeMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .collect();
    let number = |key: &str| -> Result<f64> {
        fields
            .get(key)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {key} in the lab's line: {line}"))
    };
    let (flashline, qdl, bytes) = (
        number("flashline_median")?,
        number("qdl_median")?,
        number("bytes")?,
    );
    let ratio = flashline / qdl;
    Ok(Figure {
        number: 10,
        what: WHAT.into(),
        measured: format!(
            "{ratio:.2} ({flashline:.2} s vs {qdl:.2} s for {:.0} MiB, in the guest)",
            bytes / f64::from(1 << 20)
        ),
        target: TARGET.into(),
        met: Some(ratio <= 1.0),
        details: vec![
            format!("scenario 11's line: EDL-QDL-SPEED {line}"),
            "the guest runs under QEMU TCG: both hosts and the device share one emulated \
             CPU; every run starts from a zeroed boot and modem, and the LUN is checked \
             against the build after each"
                .into(),
        ],
    })
}
