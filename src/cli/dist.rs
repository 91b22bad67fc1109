//! Files a distribution package ships beside the binary, generated from the command line's
//! own definitions so they can never disagree with it: the man pages, the shell
//! completions and the udev rules.
//!
//! `flashline dist-assets DIR` writes them; `cargo deb` (see `[package.metadata.deb]` in
//! Cargo.toml and `.ci/deb-check`) packages what it wrote. The command is hidden: it is a
//! packaging step, not something a technician runs.

use std::fs;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;
use crate::device::quirks::Quirks;

/// The shells whose completions a package installs, with the file name each one looks for.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "flashline.bash"),
    (Shell::Zsh, "_flashline"),
    (Shell::Fish, "flashline.fish"),
];

/// Writes `DIR/man/*.1`, `DIR/completions/*` and `DIR/70-flashline.rules`.
pub fn run(out: &Path) -> Result<ExitCode> {
    let man = out.join("man");
    let completions = out.join("completions");
    for dir in [&man, &completions] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut command = Cli::command();
    command.build();
    write_man_pages(&command, &man)?;
    for (shell, name) in SHELLS {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "flashline", &mut script);
        write(&completions.join(name), &script)?;
    }
    write(
        &out.join("70-flashline.rules"),
        Quirks::builtin().udev_rules().as_bytes(),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// One page for `flashline` and one per visible subcommand (`flashline-flash.1`, …), the
/// way git and cargo document theirs, so `man flashline-flash` shows a command's options.
fn write_man_pages(command: &clap::Command, dir: &Path) -> Result<()> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone()).render(&mut page)?;
    write(&dir.join("flashline.1"), &page)?;
    let pages = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set() && sub.get_name() != "help");
    for sub in pages {
        let name = format!("flashline-{}", sub.get_name());
        let mut page = Vec::new();
        let sub = sub
            .clone()
            .name(name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        clap_mangen::Man::new(sub).render(&mut page)?;
        write(&dir.join(format!("{name}.1")), &page)?;
    }
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    /// clap checks its definitions (unique names, valid `requires`/`conflicts_with`) only
    /// when a command is built; this builds every one, so a clash fails here and not in
    /// a technician's terminal.
    #[test]
    fn the_command_line_definitions_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
