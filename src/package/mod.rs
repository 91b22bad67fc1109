//! Signed firmware packages: the format, keys, trust, packing and verification.
//!
//! This is the only code in flashline that decides what to trust. A package is one file
//! (see [`container`] for the layout) holding a small JSON manifest, ed25519 signatures over
//! that manifest, and the images. The manifest binds every image by size and sha256, so one
//! signature check plus one hashing pass proves the whole package.
//!
//! The flow is typed: [`Package::open`] parses structure only and offers the unverified
//! manifest for display; [`Package::verify`] checks signatures against a [`TrustStore`] and
//! hashes every byte, returning a [`VerifiedPackage`]; its [`ImageReader`]s re-hash what
//! they hand out so the bytes sent to a device are provably the signed ones.
//!
//! A package is either a fastboot package (one image per partition) or a Qualcomm flat
//! build for EDL, whose signed [`qualcomm::QualcommPlan`] says where each image goes.
#![forbid(unsafe_code)]

pub mod container;
mod dynamic;
mod error;
pub mod factory;
mod inspect;
mod keys;
mod manifest;
mod names;
mod pack;
pub mod qualcomm;
mod reader;
pub mod root;
mod trust;
pub mod unisoc;
mod verify;
pub mod zxic;

pub use dynamic::{logical_names, parse as parse_super_empty};
pub use error::PackageError;
pub use inspect::{inspect, Inspection, SignatureReport, SignatureStatus};
pub use keys::{generate_key, GeneratedKey, KeyId, PublicKey};
pub use manifest::{
    Dynamic, Image, ImageBlocks, Manifest, Requirement, Sha256Sum, SparseInfo, Target, MAX_IMAGES,
    MAX_IMAGE_SIZE, MAX_SUPER_EMPTY_SIZE, MAX_TARGETS, SUPER_EMPTY,
};
pub use pack::{pack, PackSummary};
pub use reader::{ImageReader, PlanningReader};
pub use root::{RootDocument, RootKey, SignedRoot};
pub use trust::{KeyScope, TrustStore, TrustedKey};
pub use verify::{Package, Signer, VerifiedPackage};

/// Decodes exactly `2 * N` lowercase hex digits; the one spelling keeps text forms canonical.
fn decode_lower_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != 2 * N || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Bytes from the operating system's secure random source.
fn random<const N: usize>() -> std::io::Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::getrandom(&mut out).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(out)
}
