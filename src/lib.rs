//! flashline: flash signed firmware onto phones, USB modems and mobile hotspots, and bring
//! bricked ones back.
//!
//! Data flows one way through the modules, and each module only knows the ones before it:
//!
//! ```text
//! package file ─▶ package::VerifiedPackage ─▶ engine::plan ─▶ device driver
//!              ─▶ protocol (fastboot, sparse, …) ─▶ transport (TCP, USB) ─▶ bytes ─▶ report
//! ```
//!
//! * [`transport`] moves bytes and nothing else.
//! * [`protocol`] holds pure codecs and client state machines, one module per wire protocol.
//! * [`device`] discovers devices, classifies them from the quirks data file and drives them.
//! * [`package`] is the only code that decides what to trust.
//! * [`engine`] runs a flash job and emits typed events that front ends consume.
//! * [`sim`] serves virtual devices that speak the real protocols, for tests and the demo.
//! * [`cli`] and [`gui`] are thin front ends over the engine.

pub mod cli;
pub mod device;
pub mod doctor;
pub mod engine;
#[cfg(feature = "fleet")]
pub mod fleet;
#[cfg(feature = "gui")]
pub mod gui;
pub mod hashing;
pub mod package;
pub mod paths;
pub mod platform;
pub mod protocol;
pub mod secure_fs;
pub mod sim;
pub mod state_file;
pub mod station;
pub mod transport;
