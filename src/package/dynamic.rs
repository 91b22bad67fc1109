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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::package::{generate_key, pack, Package, TrustStore};
    use crate::protocol::lp::{GroupSpec, PartitionSpec, SuperLayout};

    const MIB: u64 = 1024 * 1024;

    fn layout(names: &[&str]) -> Vec<u8> {
        let mut layout = SuperLayout::new(64 * MIB, 2);
        layout.groups.push(GroupSpec {
            name: "main_b".into(),
            maximum_size: 0,
        });
        for name in names {
            layout.partitions.push(PartitionSpec {
                name: name.to_string(),
                group: "main_b".into(),
                size: 0,
                attributes: 0,
            });
        }
        let mut out = Vec::new();
        lp::write_empty_image(&layout.build().unwrap(), &mut out).unwrap();
        out
    }

    /// Writes a release folder with boot and a logical system, packs it, and returns the
    /// package path or the pack error.
    fn pack_with(dir: &Path, super_empty: &[u8]) -> Result<std::path::PathBuf, PackageError> {
        std::fs::write(dir.join("boot.img"), vec![7u8; 8192]).unwrap();
        std::fs::write(dir.join("system.img"), vec![9u8; 16384]).unwrap();
        std::fs::write(dir.join("super_empty.img"), super_empty).unwrap();
        std::fs::write(
            dir.join("manifest.toml"),
            "name = \"modern\"\nversion = \"1.0.0\"\nsecurity_version = 1\nmin_battery_percent = 0\n\
             [[target]]\nproduct = \"p\"\n[dynamic]\nsuper_empty = \"super_empty.img\"\n\
             [[image]]\npartition = \"boot\"\nfile = \"boot.img\"\nreboot_bootloader = true\n\
             [[image]]\npartition = \"system\"\nfile = \"system.img\"\nlogical = true\n",
        )
        .unwrap();
        let out = dir.join("modern.flpkg");
        pack(&dir.join("manifest.toml"), &dir.join("keys/k.key"), &out).map(|_| out)
    }

    #[test]
    fn the_layout_is_signed_stored_last_and_read_back_verified() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        generate_key("k", &keys).unwrap();
        let bytes = layout(&["system_a", "system_b"]);
        let pkg = pack_with(dir.path(), &bytes).unwrap();
        let trust = TrustStore::load_dir(&keys).unwrap();
        let verified = Package::open(&pkg).unwrap().verify(&trust).unwrap();
        let m = verified.manifest();
        assert!(m.images[0].reboot_bootloader && m.images[1].logical);
        assert_eq!(
            m.dynamic.as_ref().unwrap().super_empty.size,
            bytes.len() as u64
        );
        let metadata = verified.super_empty_metadata().unwrap().unwrap();
        assert_eq!(logical_names(&metadata, "system"), ["system_a", "system_b"]);

        // The layout's bytes are the last of the file and signed like an image's.
        let mut file = std::fs::read(&pkg).unwrap();
        let at = file.len() - bytes.len();
        assert_eq!(&file[at..], bytes.as_slice());
        file[at + 100] ^= 1;
        std::fs::write(&pkg, &file).unwrap();
        let refused = Package::open(&pkg).unwrap().verify(&trust).unwrap_err();
        assert!(
            matches!(&refused, PackageError::HashMismatch { partition } if partition == SUPER_EMPTY),
            "{refused}"
        );
    }

    #[test]
    fn a_layout_that_does_not_name_a_logical_image_is_refused_at_pack_time() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("keys")).unwrap();
        generate_key("k", &dir.path().join("keys")).unwrap();
        let e = pack_with(dir.path(), &layout(&["vendor_a", "vendor_b"])).unwrap_err();
        assert!(
            e.to_string()
                .contains("names no logical partition \"system\""),
            "{e}"
        );
        let e = pack_with(dir.path(), b"not LP metadata at all").unwrap_err();
        assert!(e.to_string().contains("super_empty.img"), "{e}");
    }
}
