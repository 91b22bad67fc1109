//! A chain of stations: packages from one signed TUF repository, staged rollouts from
//! Eclipse hawkBit, and every job's report written once to S3-compatible storage. flashline
//! ships no server for any of these; it plugs into engines made for them (see README's
//! Fleet section).

pub mod ddi;
pub mod secret;
