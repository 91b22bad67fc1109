//! The command-line front end.

use std::process::ExitCode;

/// Runs the CLI.
pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
