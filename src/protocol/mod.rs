//! Wire protocols: pure codecs and client state machines, one module per protocol.
//!
//! Nothing here knows about packages, plans or user interfaces.

pub mod at;
pub mod avb;
pub mod diag;
pub mod fastboot;
pub mod firehose;
pub mod gpt;
pub mod lp;
mod read_buffer;
pub mod sahara;
pub mod sparse;
pub mod unisoc;
pub mod zxic;
