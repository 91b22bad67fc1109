//! `flashline repo sync|list`: packages from a TUF repository (see [`crate::fleet::repo`]).
//!
//! `sync` verifies the repository's newest metadata; `list` shows what the last verified
//! metadata offers, without the network, and with `--verify` downloads each package into
//! the cache and runs flashline's package check on it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use super::render::{say, say_err};
use super::{load_trust, TrustArg};
use crate::fleet::repo::{RepoConfig, Repository};

#[derive(Subcommand)]
pub(super) enum RepoCommand {
    /// Fetch and verify the repository's newest metadata. If the repository cannot be
    /// reached, says how long the last verified metadata still holds (exit code 1).
    Sync(RepoArgs),
    /// List the packages the last verified metadata offers (no network unless --verify).
    List {
        #[command(flatten)]
        repo: RepoArgs,
        /// Download each package not yet cached and check it with the trust store,
        /// showing its version and signer.
        #[arg(long)]
        verify: bool,
        #[command(flatten)]
        trust: TrustArg,
    },
}

/// Where the repository is: a station file, or the four settings one by one.
#[derive(Args)]
pub(super) struct RepoArgs {
    /// The station file (TOML) whose `[repository]` table names the repository.
    #[arg(long, conflicts_with_all = ["metadata_url", "targets_url", "root", "cache"])]
    config: Option<PathBuf>,
    /// The repository's metadata folder (`https://…/metadata/`, `file:///media/usb/metadata/`).
    #[arg(long, requires_all = ["targets_url", "root", "cache"])]
    metadata_url: Option<String>,
    /// The repository's targets folder.
    #[arg(long, requires_all = ["metadata_url", "root", "cache"])]
    targets_url: Option<String>,
    /// The pinned root.json, shipped to the station out of band.
    #[arg(long, requires_all = ["metadata_url", "targets_url", "cache"])]
    root: Option<PathBuf>,
    /// The station's cache folder.
    #[arg(long, requires_all = ["metadata_url", "targets_url", "root"])]
    cache: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl RepoArgs {
    fn config(&self) -> Result<RepoConfig> {
        if let Some(file) = &self.config {
            return match RepoConfig::from_station_file(file)? {
                Some(config) => Ok(config),
                None => bail!("{} has no [repository] table", file.display()),
            };
        }
        match (
            &self.metadata_url,
            &self.targets_url,
            &self.root,
            &self.cache,
        ) {
            (Some(metadata), Some(targets), Some(root), Some(cache)) => Ok(RepoConfig::new(
                metadata,
                targets,
                root.clone(),
                cache.clone(),
            )?),
            _ => bail!(
                "name the repository: --config fleet.toml, or --metadata-url, --targets-url, \
                 --root and --cache"
            ),
        }
    }
}

pub(super) fn run(command: RepoCommand) -> Result<ExitCode> {
    match command {
        RepoCommand::Sync(args) => sync(&args),
        RepoCommand::List {
            repo,
            verify,
            trust,
        } => list(&repo, verify.then_some(&trust)),
    }
}

fn sync(args: &RepoArgs) -> Result<ExitCode> {
    let repo = Repository::sync(&args.config()?)?;
    let freshness = repo.freshness();
    let count = repo.targets().len();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "freshness": freshness, "targets": count }))?
        );
    } else if freshness.online {
        say!("synced: {count} packages; {}", freshness.describe());
    } else {
        say_err!(
            "not synced; working from the last verified metadata ({count} packages) until \
             it expires: {}",
            freshness.describe()
        );
    }
    Ok(if freshness.online {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn list(args: &RepoArgs, verify: Option<&TrustArg>) -> Result<ExitCode> {
    let repo = Repository::offline(&args.config()?)?;
    let trust = verify.map(load_trust).transpose()?;
    let mut rows = Vec::new();
    let mut refused = false;
    for target in repo.targets() {
        let checked = trust
            .as_ref()
            .map(|trust| repo.fetch_verified(&target.name, trust));
        let package = match &checked {
            Some(Ok(p)) => json!({
                "path": p.path,
                "name": p.manifest.name,
                "version": p.manifest.version.to_string(),
                "signer": p.signer.name,
            }),
            Some(Err(e)) => {
                refused = true;
                json!({ "refused": e.to_string() })
            }
            None => serde_json::Value::Null,
        };
        if !args.json {
            let status = match &checked {
                Some(Ok(p)) => format!(
                    "  {} {} signed by {}",
                    p.manifest.name, p.manifest.version, p.signer.name
                ),
                Some(Err(e)) => format!("  REFUSED: {e}"),
                None => String::new(),
            };
            say!(
                "{}  {} bytes  sha256 {}{status}",
                target.name,
                target.length,
                &target.sha256[..16]
            );
        }
        rows.push(json!({ "target": target, "package": package }));
    }
    let freshness = repo.freshness();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "freshness": freshness, "packages": rows }))?
        );
    } else {
        say!("{} packages; {}", rows.len(), freshness.describe());
    }
    Ok(if refused {
        ExitCode::from(super::EXIT_PACKAGE_REJECTED)
    } else {
        ExitCode::SUCCESS
    })
}
