//! What the station needs from a fleet: for each device on the bench, whether a rollout
//! offers it a package, whether that offer still stands right before the write, and where
//! the job's result goes.
//!
//! The station knows the fleet only through [`FleetLink`], so station mode builds without
//! the `fleet` feature and its decisions are tested with a fake. The real link
//! (`fleet::gateway`) speaks hawkBit's device API as a gateway, fetches packages from a TUF
//! repository and queues signed reports for the bucket.
//!
//! The link never flashes and never trusts: a package it hands over is still opened and
//! checked by the station with its trust store (`package::verify`) before a job is
//! started, and the local canary and kill switch still decide when.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::report::BatchReport;
use crate::engine::Report;

/// A device on the bench, as a rollout server knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetDevice {
    /// The bench slot (USB port path, or a virtual device's address).
    pub slot: String,
    /// The technician's name for the slot.
    pub label: Option<String>,
    /// Serial number (USB serial, else the one the device reported).
    pub serial: Option<String>,
    /// IMEI, where the device told it.
    pub imei: Option<String>,
    /// Model (product).
    pub model: Option<String>,
    /// Firmware version as reported.
    pub version: Option<String>,
}

/// One rollout action for one device: what the station quotes back when it asks again,
/// starts, or reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ticket {
    /// The rollout server's id of the device (a salted hash, never the raw serial).
    pub target: String,
    /// The server's action id.
    pub action: u64,
    /// The package's name in the repository.
    pub package: String,
}

/// What the fleet says about a device now.
#[derive(Debug, Clone)]
pub enum Offer {
    /// A rollout wants this device flashed with the package at `path`, which the
    /// repository verified (length and hash) and the station verifies again.
    Deployment {
        /// The action.
        ticket: Ticket,
        /// The package file (in the repository's content-addressed cache).
        path: PathBuf,
    },
    /// Nothing to flash now: no deployment, or the server or repository cannot be reached
    /// (`why` says which). Ask again after `retry`.
    Nothing {
        /// What the slot shows.
        why: String,
        /// When to ask again.
        retry: Duration,
    },
}

/// The station's link to the fleet. Every call is blocking and bounded by timeouts; the
/// station calls it from worker threads, never from the thread that owns its state.
pub trait FleetLink: Send + Sync + std::fmt::Debug {
    /// Asks about `device` (polls as its target, uploads its attributes when asked), and
    /// fetches the package of a deployment.
    fn offer(&self, device: &FleetDevice) -> Offer;
    /// Right before the first write: `Ok` if the action is still open, else `Err` with why
    /// it is not (cancelled, or the server cannot say: a write the fleet may have revoked
    /// is never started).
    fn still_wanted(&self, ticket: &Ticket) -> Result<(), String>;
    /// The write starts (feedback "proceeding").
    fn started(&self, ticket: &Ticket);
    /// The job ended: closes the action with its outcome and queues the signed report.
    fn finished(&self, ticket: &Ticket, report: &Report, path: Option<&Path>);
    /// The device cannot take the package offered (`why`): closes the action as failed.
    fn declined(&self, ticket: &Ticket, why: &str);
    /// The connections as they stand, for the board (cheap: no network).
    fn status(&self) -> FleetStatus;
    /// The batch ended (the station stopped): queues its final report, `batch` being the
    /// batch folder's name. Per-device reports went at each job's end.
    fn batch_ended(&self, batch: &str, report: &BatchReport);
}

/// Whether a peer answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    /// Not tried yet.
    #[default]
    Unknown,
    /// The last call succeeded.
    Up,
    /// The last call failed.
    Down,
}

impl LinkState {
    /// A word for people.
    pub fn word(self) -> &'static str {
        match self {
            LinkState::Unknown => "not tried yet",
            LinkState::Up => "connected",
            LinkState::Down => "unreachable",
        }
    }
}

/// One peer's state and, when it is down, the last error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Link {
    /// Where it is (URL or bucket), never with credentials.
    pub at: String,
    /// Up or down.
    pub state: LinkState,
    /// The last error, or what was last done.
    pub detail: Option<String>,
}

/// The fleet as the board shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetStatus {
    /// The station's name in the fleet.
    pub station: String,
    /// The TUF repository.
    pub repository: Link,
    /// The rollout server (hawkBit's device API).
    pub rollouts: Link,
    /// The report store (the bucket).
    pub reports: Link,
    /// Reports waiting in the outbox.
    pub outbox_pending: usize,
    /// When the repository's metadata was last verified (RFC 3339 UTC).
    pub last_sync: Option<String>,
    /// Until when that metadata may be used offline (RFC 3339 UTC).
    pub fresh_until: Option<String>,
}
