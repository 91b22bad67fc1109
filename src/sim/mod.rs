//! Virtual devices that speak the real wire protocols over TCP or a pseudo-terminal, for
//! tests and the demo.
//!
//! A simulator is honest: it checks what the real device checks, refuses what the real
//! device refuses, and stores exactly the bytes it was sent, so independent clients (such
//! as Google's `fastboot`) can drive it and tests can inspect the result.
//!
//! Each one also takes a [`FaultPlan`]: deterministic, one-shot misbehaviour (a pulled
//! cable, a power cut mid-write, a refused, unanswered or garbled command, a draining
//! battery, a spontaneous mode switch) for tests that must prove a flash survives it.

#[cfg(unix)]
pub mod bench;
#[cfg(unix)]
pub mod download_mode;
#[cfg(unix)]
pub mod edl;
pub mod fault;
#[cfg(target_os = "linux")]
pub mod gadget;
#[cfg(unix)]
pub mod modem;
pub mod phone;
pub(crate) mod shaper;
#[cfg(unix)]
pub mod unisoc;
#[cfg(unix)]
pub mod zxic;

pub use fault::{Fault, FaultPlan};
#[cfg(unix)]
pub use modem::{ModemConfig, ModemKind, ModemSim, RunningModem};
pub use phone::{ConfigError, PhoneConfig, PhoneSim, RunningPhone};
