//! `flashline reports pending|drain`: the report outbox from a terminal.
//!
//! `pending` lists what is queued and prints the station key that seals it (what a reader
//! of the bucket enrols to check envelopes); `drain` sends the queue now, without waiting
//! out the backoff, and exits 0 only when nothing is left.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::render::{say, say_err};
use crate::fleet::reports::{default_outbox, Outbox, S3Config, S3Store};

/// `flashline reports …`.
#[derive(Subcommand)]
pub(super) enum ReportsCommand {
    /// List the reports waiting in the outbox, oldest first.
    Pending {
        #[command(flatten)]
        outbox: OutboxArg,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send the outbox to the S3-compatible store now, oldest first.
    Drain {
        #[command(flatten)]
        outbox: OutboxArg,
        #[command(flatten)]
        store: StoreArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub(super) struct OutboxArg {
    /// The outbox folder (default: `outbox` under flashline's home).
    #[arg(long)]
    outbox: Option<PathBuf>,
}

#[derive(Args)]
pub(super) struct StoreArgs {
    /// The store's endpoint (`https://…`; plain `http://` only to this machine).
    #[arg(long)]
    endpoint: url::Url,
    /// The bucket.
    #[arg(long)]
    bucket: String,
    /// The region to sign for.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// The credentials file (mode 0600): `aws_access_key_id = …` and
    /// `aws_secret_access_key = …` lines, as in an AWS credentials file.
    #[arg(long)]
    credentials: PathBuf,
    /// Time limit of each put, retries included.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Runs `flashline reports …`.
pub(super) fn run(command: ReportsCommand) -> Result<ExitCode> {
    match command {
        ReportsCommand::Pending { outbox, json } => {
            let outbox = open(&outbox)?;
            let queued = outbox.queued()?;
            if json {
                let out = serde_json::json!({
                    "pending": queued.len(),
                    "queued": queued,
                    "station_key_id": outbox.station_key().id(),
                    "station_public_key": outbox.station_key().public_key(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                say!(
                    "{} reports waiting (sealed by station key {}, public key {})",
                    queued.len(),
                    outbox.station_key().id(),
                    outbox.station_key().public_key()
                );
                for q in &queued {
                    say!("  {}", q.key);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ReportsCommand::Drain {
            outbox,
            store,
            json,
        } => {
            let outbox = open(&outbox)?;
            let store = S3Store::new(&S3Config {
                endpoint: store.endpoint,
                bucket: store.bucket,
                region: store.region,
                credentials: store.credentials,
                timeout: store.timeout,
            })?;
            let report = outbox.drain_now(&store);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for key in &report.stored {
                    say!("stored          {key}");
                }
                for key in &report.already_stored {
                    say!("already stored  {key}");
                }
                for name in &report.rejected {
                    say_err!("unreadable entry {name} moved to rejected/");
                }
                if let Some(error) = &report.error {
                    say_err!("stopped: {error}");
                }
                say!("{} reports still waiting", report.remaining);
            }
            Ok(if report.remaining == 0 && report.error.is_none() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn open(arg: &OutboxArg) -> Result<Outbox> {
    let dir = arg.outbox.clone().unwrap_or_else(default_outbox);
    Ok(Outbox::open(&dir)?)
}
