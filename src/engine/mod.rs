//! The flash job and everything it decides: preflight, plan, events, report, history.
//!
//! Front ends (CLI, GUI) start jobs and consume [`Event`]s; they hold no flashing logic.

pub mod backup;
pub mod event;
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

pub use event::{Event, PlannedWrite, Stage};
pub use job::{
    run, run_verified, spawn, spawn_verified, Cancel, DeviceTarget, JobOptions, JobRequest,
};
pub use preflight::{Check, Overrides, Status};
pub use report::{Outcome, Report};
