//! Wire protocols: pure codecs and client state machines, one module per protocol.
//!
//! Nothing here knows about packages, plans or user interfaces.

pub mod fastboot;
pub mod gpt;
pub mod sparse;
