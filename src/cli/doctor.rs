//! `flashline doctor`: why a device is not seen, and how to fix it.

use std::process::ExitCode;

use anyhow::Result;

use super::render::say;
use crate::device::quirks::Quirks;
use crate::doctor::{self, SystemView};

/// Prints the findings for this system. The exit code is 0 whenever the checks ran: the
/// findings are the answer, not a failure.
pub fn run(json: bool) -> Result<ExitCode> {
    let findings = doctor::diagnose(&SystemView::here(), &Quirks::builtin());
    if json {
        say!("{}", doctor::to_json(&findings));
    } else {
        print!(
            "{}",
            crate::device::printable_lines(&doctor::render(&findings))
        );
    }
    Ok(ExitCode::SUCCESS)
}
