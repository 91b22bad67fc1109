//! A chain of stations (issue 18): packages from one signed repository, rollouts from a
//! rollout server, reports to central storage. flashline ships no server for any of these;
//! each part is a client of an engine made for the job, behind the `fleet` feature.

pub mod repo;
