//! A chain of stations (issue 18): packages from one signed TUF repository, rollouts decided
//! by Eclipse hawkBit through its device API with the station as a gateway, and every job's
//! report written once to S3-compatible storage. flashline ships no server of its own for
//! any of these; each submodule plugs into an existing engine and keeps its own async
//! runtime inside, so the station's thread-based runner calls plain blocking functions, each
//! bounded by a timeout.

pub mod reports;
pub mod secret;
