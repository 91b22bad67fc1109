//! A chain of stations (issue 18): packages from one signed repository, staged rollouts
//! that halt themselves, reports collected centrally. flashline ships no server for any of
//! these; a station plugs into engines made for them, behind the `fleet` feature: a TUF
//! repository on any static host ([`repo`]), Eclipse hawkBit's device API, spoken as a
//! gateway for every device on the bench ([`ddi`]), and any S3-compatible store, fed
//! through a local outbox ([`reports`]). [`config`] reads the station file, and
//! [`gateway`] joins the three into the station's
//! [`FleetLink`](crate::station::fleet::FleetLink). Each part keeps its own async runtime
//! inside, so the station's thread-based runner calls plain blocking functions, each
//! bounded by a timeout. Secrets (tokens, keys) are [`secret::Secret`]s: never printed,
//! read from private files.

pub mod config;
pub mod ddi;
pub mod gateway;
pub mod repo;
pub mod reports;
pub mod secret;
