//! Virtual devices that speak the real wire protocols over TCP, for tests and the demo.
//!
//! A simulator is honest: it checks what the real device checks, refuses what the real
//! device refuses, and stores exactly the bytes it was sent, so independent clients (such
//! as Google's `fastboot`) can drive it and tests can inspect the result.

pub mod phone;

pub use phone::{ConfigError, PhoneConfig, PhoneSim, RunningPhone};
