//! A package's dynamic-partitions layout: the `super_empty.img` that goes with its logical
//! images, checked at pack time so that a package never promises a partition its own LP
//! metadata does not name.

use std::io::{Cursor, Read};

use super::manifest::{Dynamic, MAX_SUPER_EMPTY_SIZE, SUPER_EMPTY};
use super::pack::Sources;
use super::PackageError;
use crate::protocol::lp::{self, Container, Metadata};

/// Hashes `file` as the package's `super_empty.img` (stored after the images), and checks
/// that it is LP metadata in the `super_empty` container naming every one of `logical`.
pub(crate) fn describe<'a>(
    sources: &mut Sources,
    file: &str,
    logical: impl Iterator<Item = &'a str>,
) -> Result<Dynamic, PackageError> {
    let index = sources.add(SUPER_EMPTY, file)?;
    let size = sources.image(index).size;
    if size > MAX_SUPER_EMPTY_SIZE {
        return Err(PackageError::DeclaredSizeTooLarge {
            partition: SUPER_EMPTY.into(),
            size,
        });
    }
    let bytes = sources.read_whole(index)?;
    let metadata = parse(&bytes)?;
    for partition in logical {
        if logical_names(&metadata, partition).is_empty() {
            return Err(PackageError::ManifestInvalid(format!(
                "{file} names no logical partition {partition:?} (nor one per slot)"
            )));
        }
    }
    Ok(Dynamic {
        super_empty: sources.image(index).clone(),
    })
}

/// Reads the bytes of a `super_empty.img` (a super image's head is refused: the package
/// must carry the layout, not a whole super).
pub fn parse(bytes: &[u8]) -> Result<Metadata, PackageError> {
    let invalid = |why: String| PackageError::ManifestInvalid(format!("super_empty.img: {why}"));
    match lp::read_metadata(&mut Cursor::new(bytes), 0) {
        Ok((Container::EmptyImage, metadata)) => Ok(metadata),
        Ok((Container::SuperDevice, _)) => Err(invalid(
            "this is a super image, not the LP metadata of a super_empty.img".into(),
        )),
        Err(e) => Err(invalid(e.to_string())),
    }
}

/// The names `metadata` gives the logical partition `base`: itself, or one per slot
/// (`system_a`, `system_b`), as A/B layouts list them.
pub fn logical_names<'m>(metadata: &'m Metadata, base: &str) -> Vec<&'m str> {
    metadata
        .partitions
        .iter()
        .map(|p| p.name.as_str())
        .filter(|name| {
            *name == base
                || name
                    .strip_prefix(base)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .is_some_and(|slot| {
                        slot.len() == 1 && slot.bytes().all(|b| b.is_ascii_lowercase())
                    })
        })
        .collect()
}

impl super::VerifiedPackage {
    /// The LP metadata of the package's `super_empty.img`, read through the hashing reader
    /// and used only if its bytes are the signed ones; `None` without a dynamic layout.
    pub fn super_empty_metadata(&self) -> Result<Option<Metadata>, PackageError> {
        if self.manifest().dynamic.is_none() {
            return Ok(None);
        }
        let mut reader = self.open_super_empty()?;
        let mut bytes = Vec::new();
        std::io::Read::by_ref(&mut reader)
            .take(MAX_SUPER_EMPTY_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| PackageError::ManifestInvalid(format!("super_empty.img: {e}")))?;
        reader.finish()?;
        parse(&bytes).map(Some)
    }
}
