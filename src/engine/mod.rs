//! The flash job and everything it decides: preflight, plan, events, report, history.
//!
//! Front ends (CLI, GUI) start jobs and consume [`Event`]s; they hold no flashing logic.

pub mod backup;
mod download_mode;
pub mod dynamic;
pub mod event;
mod fastbootd;
pub mod filesystem;
pub mod history;
mod identity;
pub mod job;
pub mod journal;
pub mod plan;
pub mod preflight;
mod qualcomm;
pub mod report;
pub mod service;
pub mod station;
mod super_image;
mod unisoc;
mod vbmeta;
pub mod verbs;
mod zxic;

pub use event::{Event, PlannedWrite, Stage};
pub use job::{
    run, run_verified, spawn, spawn_verified, Cancel, DeviceTarget, JobOptions, JobRequest,
};
pub use preflight::{Check, Overrides, Status};
pub use report::{Outcome, Report};

use crate::device::DeviceInfo;
use crate::package::VerifiedPackage;

/// The product a device is taken for: what it reports or, for a device that cannot say
/// (EDL, a brick), the first product the package is made for. The quirks model, the
/// identity labels and the history key all follow it.
pub(crate) fn product_of(device: &DeviceInfo, package: &VerifiedPackage) -> Option<String> {
    device.product.clone().or_else(|| {
        package
            .manifest()
            .targets
            .first()
            .map(|t| t.product.clone())
    })
}
