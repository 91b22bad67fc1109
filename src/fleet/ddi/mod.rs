//! Rollouts from Eclipse hawkBit's Direct Device Integration (DDI) API, with the station as
//! a gateway.
//!
//! Phones and modems on a bench cannot talk to hawkBit themselves, and walk-in devices have
//! no per-device token. So the station polls hawkBit *in the name of* each device on its
//! bench with the tenant's `GatewayToken`; each device is one hawkBit target, named by a
//! salted hash of its serial and IMEI ([`TargetId`]).
//!
//! hawkBit decides who gets what and when (groups, the canary share, the error threshold
//! that pauses a rollout fleet-wide); the TUF repository decides what is authentic. A
//! deployment therefore only *names* a package, by its TUF target name and SHA-256
//! ([`PackageRef`], see [`package`] for where in the distribution set that name is read);
//! the bytes come from the repository and pass flashline's own package check.
//!
//! The station needs five calls, the [`Rollouts`] trait; [`HawkbitDdi`] implements them over
//! HTTP. The DDI JSON is our own small serde layer ([`wire`]) rather than the `hawkbit`
//! crate's, because that crate requires all three artifact hashes (gooseBit publishes only
//! SHA-1), caps artifact sizes at `u32` (phone images are larger than 4 GiB), and sends no
//! feedback `code`.
//!
//! Two rules come from how hawkBit halts a rollout:
//! - **A pause is not a revoke.** When a group's error threshold trips, hawkBit pauses the
//!   rollout, but actions already handed out stay open and are still served; only `stop`
//!   (or cancelling the action) takes them back. So the station asks again right before each
//!   write ([`Rollouts::still_wanted`], [`write_if_still_wanted`]) and skips the write when
//!   the action is gone or being cancelled.
//! - **Feedback is a verdict, not a report.** hawkBit keeps at most 50 messages of 512
//!   characters per status and refuses more; [`Feedback`] trims the trail to fit, and the
//!   full signed report goes to storage.

mod client;
mod error;
mod feedback;
pub mod package;
mod target_id;
pub mod wire;

pub use client::{DdiAuth, HawkbitDdi, DEFAULT_TIMEOUT};
pub use error::DdiError;
pub use feedback::{trim_details, CANCEL_ACCEPTED, MAX_DETAILS, MAX_DETAIL_CHARS};
pub use target_id::TargetId;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A hawkBit action: one assignment of a distribution set to one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActionId(pub u64);

impl fmt::Display for ActionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The package a deployment names: a target of the station's TUF repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRef {
    /// The TUF target name.
    pub tuf_target: String,
    /// The target's SHA-256, lower-case hex: the station flashes the target only if the
    /// repository's signed metadata gives the same hash.
    pub sha256: String,
    /// The target's length in bytes.
    pub size: u64,
}

/// A deployment hawkBit offers for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    pub action: ActionId,
    pub package: PackageRef,
    /// hawkBit's `update: forced` (rather than `attempt`).
    pub forced: bool,
}

/// What one poll says for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    /// How long hawkBit asks the device to wait before the next poll.
    pub sleep: Duration,
    /// An open deployment that may be installed now. A deployment whose `update` is `skip`,
    /// or whose maintenance window is closed, is not offered here; neither is one waiting
    /// for confirmation (hawkBit's `confirmationBase`: start flashline rollouts without
    /// `confirmationRequired`, the technician's bench is the confirmation).
    pub deployment: Option<Deployment>,
    /// An action hawkBit asks the device to cancel.
    pub cancel: Option<ActionId>,
    /// hawkBit wants the device's attributes ([`Rollouts::put_config`]).
    pub wants_config: bool,
}

/// How a closed action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
}

/// Where the device is with an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    /// Working on it (hawkBit: RUNNING).
    Proceeding,
    /// Done (hawkBit: FINISHED or ERROR; ERROR counts towards the group's error threshold).
    Closed(Outcome),
    /// The device confirms a cancellation (hawkBit: CANCELED).
    Canceled,
}

/// One status message for an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    pub execution: Execution,
    /// A short trail; trimmed to hawkBit's 50 messages × 512 characters when sent.
    pub details: Vec<String>,
    /// An optional status code (hawkBit shows it with the status).
    pub code: Option<i32>,
    /// Steps done of steps, such as images written of images in the plan.
    pub progress: Option<(u32, u32)>,
}

impl Feedback {
    /// A status without code or progress; `details` are trimmed to hawkBit's limits.
    pub fn new(execution: Execution, details: Vec<String>) -> Feedback {
        Feedback {
            execution,
            details: trim_details(&details),
            code: None,
            progress: None,
        }
    }

    /// The same status with a status code.
    pub fn with_code(self, code: i32) -> Feedback {
        Feedback {
            code: Some(code),
            ..self
        }
    }

    /// The same status with progress: `done` of `of` steps.
    pub fn with_progress(self, done: u32, of: u32) -> Feedback {
        Feedback {
            progress: Some((done, of)),
            ..self
        }
    }
}

/// What the station needs from a rollout server.
///
/// Every call blocks, with a timeout, and must not be made from inside an async runtime.
pub trait Rollouts: Send + Sync {
    /// Polls for one device. The first poll of an unknown id registers it in hawkBit.
    fn poll(&self, target: &TargetId) -> Result<Poll, DdiError>;
    /// Uploads the device's attributes (hawkBit's configData, merged into what it has).
    fn put_config(
        &self,
        target: &TargetId,
        data: &BTreeMap<String, String>,
    ) -> Result<(), DdiError>;
    /// Right before a write: is this action still open and not cancelled?
    fn still_wanted(&self, target: &TargetId, action: &ActionId) -> Result<bool, DdiError>;
    /// Sends one status message for a deployment.
    fn feedback(
        &self,
        target: &TargetId,
        action: &ActionId,
        feedback: &Feedback,
    ) -> Result<(), DdiError>;
    /// Accepts a cancellation hawkBit asked for (nothing of the action was written).
    fn ack_cancel(&self, target: &TargetId, action: &ActionId) -> Result<(), DdiError>;
}

/// Runs `write` only if the action is still wanted, asked right now: the gate before every
/// write to a device. `Ok(None)` means the action was cancelled or withdrawn in the meantime
/// and nothing was written.
pub fn write_if_still_wanted<T>(
    rollouts: &dyn Rollouts,
    target: &TargetId,
    action: &ActionId,
    write: impl FnOnce() -> T,
) -> Result<Option<T>, DdiError> {
    if rollouts.still_wanted(target, action)? {
        Ok(Some(write()))
    } else {
        tracing::info!(target = %target, action = %action, "action withdrawn before the write; skipped");
        Ok(None)
    }
}

/// The attribute names a station reports for a device (hawkBit's "controller attributes",
/// filterable in target queries such as `attribute.model==MF920`).
pub mod attribute {
    /// The device model, as the quirks file names it.
    pub const MODEL: &str = "model";
    /// The firmware version the device reports before the flash.
    pub const FIRMWARE: &str = "firmware";
    /// The station's name.
    pub const STATION: &str = "station";
    /// The bench slot the device is in.
    pub const BENCH_SLOT: &str = "bench_slot";
}

/// The configData a station sends for one device.
pub fn device_attributes(
    model: &str,
    firmware: &str,
    station: &str,
    bench_slot: &str,
) -> BTreeMap<String, String> {
    [
        (attribute::MODEL, model),
        (attribute::FIRMWARE, firmware),
        (attribute::STATION, station),
        (attribute::BENCH_SLOT, bench_slot),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}
