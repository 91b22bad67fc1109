//! Signed packages through the public API: pack, open, verify, read back, and every way a
//! damaged or forged package must be refused.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey};
use flashline::package::container::{
    FORMAT_VERSION, HEADER_LEN, MAGIC, SIGNATURE_DOMAIN, SIGNATURE_ENTRY_LEN,
};
use flashline::package::{
    generate_key, inspect, pack, KeyId, KeyScope, Package, PackageError, SignatureStatus,
    SparseInfo, TrustStore, VerifiedPackage,
};
use flashline::protocol::sparse;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const MINIMAL: &str = r#"name = "demo-phone-stock"
version = "2.1.0"
security_version = 7
min_battery_percent = 30
[[target]]
product = "zte-demo-phone"
[[image]]
partition = "boot"
file = "boot.img"
"#;

/// A temp directory with a release key, a trust store holding it, and a release folder.
struct Bench {
    dir: TempDir,
    key_file: PathBuf,
    key_id: KeyId,
    trust: TrustStore,
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let release = dir.path().join("release");
        fs::create_dir(&keys).unwrap();
        fs::create_dir(&release).unwrap();
        let made = generate_key("test-release", &keys).unwrap();
        let trust = TrustStore::load_dir(&keys).unwrap();
        Bench {
            key_file: made.secret_path,
            key_id: made.key_id,
            trust,
            dir,
        }
    }

    fn release(&self) -> PathBuf {
        self.dir.path().join("release")
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out.flp")
    }

    /// Writes `toml` and the given files into the release folder and packs them.
    fn pack(&self, toml: &str, files: &[(&str, &[u8])]) -> Result<PathBuf, PackageError> {
        let manifest = self.release().join("manifest.toml");
        fs::write(&manifest, toml).unwrap();
        for (name, bytes) in files {
            fs::write(self.release().join(name), bytes).unwrap();
        }
        pack(&manifest, &self.key_file, &self.out()).map(|s| s.path)
    }

    fn open_verify(&self, path: &Path) -> Result<VerifiedPackage, PackageError> {
        Package::open(path)?.verify(&self.trust)
    }

    /// Signs `manifest` the way the format prescribes, with this bench's key.
    fn sign(&self, manifest: &[u8]) -> ([u8; 8], [u8; 64]) {
        sign_with(&self.key_file, manifest)
    }
}

fn sign_with(key_file: &Path, manifest: &[u8]) -> ([u8; 8], [u8; 64]) {
    let text = fs::read_to_string(key_file).unwrap();
    let seed: [u8; 32] = hex::decode(text.split(' ').nth(1).unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = SigningKey::from_bytes(&seed);
    let id: [u8; 8] = Sha256::digest(key.verifying_key().as_bytes())[..8]
        .try_into()
        .unwrap();
    let message = [SIGNATURE_DOMAIN, manifest].concat();
    (id, key.sign(&message).to_bytes())
}

/// Builds a container by hand from the documented layout.
fn container(manifest: &[u8], signatures: &[([u8; 8], [u8; 64])], images: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(manifest.len() as u64).to_le_bytes());
    out.extend_from_slice(&(signatures.len() as u32).to_le_bytes());
    out.extend_from_slice(manifest);
    for (id, sig) in signatures {
        out.extend_from_slice(id);
        out.extend_from_slice(sig);
    }
    for image in images {
        out.extend_from_slice(image);
    }
    out
}

/// Deterministic non-repeating bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[1] ^ seed)
        .collect()
}

/// A sparse image by hand: one RAW block, then two FILL blocks.
fn sparse_image(blk_sz: u32) -> Vec<u8> {
    let mut out = sparse::Header::encode(blk_sz, 3, 2).to_vec();
    let chunk = |kind: u16, blocks: u32, payload: u32| {
        let mut c = Vec::new();
        c.extend_from_slice(&kind.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&blocks.to_le_bytes());
        c.extend_from_slice(&(12 + payload).to_le_bytes());
        c
    };
    out.extend(chunk(0xCAC1, 1, blk_sz));
    out.extend(pattern(blk_sz as usize, 0x5a));
    out.extend(chunk(0xCAC2, 2, 4));
    out.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    out
}

const TWO_IMAGES: &str = r#"name = "modem-fw"
version = "1.0.0-rc.1"
security_version = 1
min_battery_percent = 0
description = "small package for exhaustive damage tests"
[[target]]
product = "mf920"
[[image]]
partition = "boot"
file = "boot.img"
[[image]]
partition = "system"
file = "system.simg"
"#;

/// A small two-image package: a 200-byte raw image and a 120-byte sparse image.
fn small_package(bench: &Bench) -> (PathBuf, Vec<u8>, Vec<u8>) {
    sized_package(bench, 200, 64)
}

fn sized_package(bench: &Bench, boot_len: usize, blk_sz: u32) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let boot = pattern(boot_len, 1);
    let system = sparse_image(blk_sz);
    let path = bench
        .pack(TWO_IMAGES, &[("boot.img", &boot), ("system.simg", &system)])
        .unwrap();
    (path, boot, system)
}

/// Recognises one expected error.
type Check = fn(&PackageError) -> bool;

fn read_all(pkg: &VerifiedPackage, index: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut reader = pkg.open_image(index).unwrap();
    reader.read_to_end(&mut out).unwrap();
    reader.finish().unwrap();
    out
}

#[test]
fn minimal_manifest_packs_and_verifies() {
    let bench = Bench::new();
    let boot = pattern(64 * 1024, 7);
    let path = bench.pack(MINIMAL, &[("boot.img", &boot)]).unwrap();

    let pkg = bench.open_verify(&path).unwrap();
    let m = pkg.manifest();
    assert_eq!(m.name, "demo-phone-stock");
    assert_eq!(m.version, semver::Version::new(2, 1, 0));
    assert_eq!(m.security_version, 7);
    assert_eq!(m.min_battery_percent, 30);
    assert_eq!(m.targets[0].product, "zte-demo-phone");
    assert_eq!(m.images.len(), 1);
    let image = &m.images[0];
    assert_eq!(
        (image.partition.as_str(), image.file.as_str()),
        ("boot", "boot.img")
    );
    assert_eq!(image.size, boot.len() as u64);
    assert_eq!(image.sha256.0, <[u8; 32]>::from(Sha256::digest(&boot)));
    assert_eq!(image.sparse, None);
    assert_eq!(m.signer, bench.key_id);

    assert_eq!(pkg.signer().key_id, bench.key_id);
    assert_eq!(pkg.signer().name, "test-release");
    assert_eq!(pkg.signer().scope, KeyScope::Any);
    // The package is named by its signed manifest (the exact bytes serde_json wrote).
    let signed: [u8; 32] = Sha256::digest(serde_json::to_vec(m).unwrap()).into();
    assert_eq!(pkg.manifest_sha256().0, signed);
    assert!(image.blocks.is_some(), "new packages sign block hashes");
    assert_eq!(pkg.path(), path);
    assert_eq!(read_all(&pkg, 0), boot);
    assert!(matches!(
        pkg.open_image(1),
        Err(PackageError::NoSuchImage { index: 1, count: 1 })
    ));

    // Only the package is left in the output directory: no temp files.
    let names: Vec<_> = fs::read_dir(bench.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
}

#[test]
fn sparse_image_is_recorded_with_expanded_size() {
    let bench = Bench::new();
    let (path, boot, system) = small_package(&bench);
    let pkg = bench.open_verify(&path).unwrap();
    let images = &pkg.manifest().images;
    assert_eq!(images[0].sparse, None);
    assert_eq!(
        images[1].sparse,
        Some(SparseInfo {
            blk_sz: 64,
            total_blks: 3,
            expanded_size: 192
        })
    );
    assert_eq!(images[1].size, system.len() as u64);
    assert_eq!(read_all(&pkg, 0), boot);
    assert_eq!(read_all(&pkg, 1), system);
    assert_eq!(
        pkg.manifest().description.as_deref(),
        Some("small package for exhaustive damage tests")
    );
}

#[test]
fn every_single_byte_flip_is_rejected() {
    let bench = Bench::new();
    // The smallest package that still has every region: about 600 bytes, each one tried.
    let (path, boot, system) = sized_package(&bench, 16, 4);
    let good = fs::read(&path).unwrap();
    let system_start = good.len() - system.len();
    let boot_start = system_start - boot.len();
    let damaged = bench.dir.path().join("damaged.flp");
    for offset in 0..good.len() {
        let mask = [0x01u8, 0x80, 0xff, 0x10][offset % 4];
        let mut bytes = good.clone();
        bytes[offset] ^= mask;
        fs::write(&damaged, &bytes).unwrap();
        if offset < boot_start {
            bench
                .open_verify(&damaged)
                .expect_err(&format!("flip {mask:#04x} at offset {offset} was accepted"));
            continue;
        }
        // An image byte: images with signed block hashes are checked as they are read,
        // so verifying may pass, but no reader hands the damaged block out, and
        // `flashline verify` (`Package::check`) names the image.
        let (expected, index) = if offset >= system_start {
            ("system", 1)
        } else {
            ("boot", 0)
        };
        let err = Package::open(&damaged)
            .unwrap()
            .check(&bench.trust)
            .expect_err(&format!("flip {mask:#04x} at offset {offset} was accepted"));
        assert!(
            matches!(&err, PackageError::HashMismatch { partition } if partition == expected),
            "offset {offset}: {err}"
        );
        if let Ok(pkg) = bench.open_verify(&damaged) {
            let mut read = Vec::new();
            let err = pkg
                .open_image(index)
                .unwrap()
                .read_to_end(&mut read)
                .expect_err(&format!("offset {offset}: the damaged image was read"));
            assert!(err.to_string().contains("changed since it was verified"));
            assert!(
                read.is_empty(),
                "offset {offset}: bytes of the block were handed out"
            );
        }
    }
}

#[test]
fn truncation_at_every_offset_is_rejected() {
    let bench = Bench::new();
    let (path, _, _) = small_package(&bench);
    let good = fs::read(&path).unwrap();
    let cut = bench.dir.path().join("cut.flp");
    for len in 0..good.len() {
        fs::write(&cut, &good[..len]).unwrap();
        match Package::open(&cut) {
            Err(PackageError::Truncated { actual, .. }) => assert_eq!(actual, len as u64),
            other => panic!("cut at {len}: {other:?}"),
        }
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    let bench = Bench::new();
    let (path, _, _) = small_package(&bench);
    let good = fs::read(&path).unwrap();
    for extra in [1usize, 4096] {
        let mut bytes = good.clone();
        bytes.extend(std::iter::repeat_n(0, extra));
        fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            Package::open(&path),
            Err(PackageError::TrailingBytes { extra: e }) if e == extra as u64
        ));
    }
}

#[test]
fn untrusted_signer_is_rejected_and_inspect_reports_it() {
    let bench = Bench::new();
    let (path, _, _) = small_package(&bench);
    let other = tempfile::tempdir().unwrap();
    generate_key("someone-else", other.path()).unwrap();
    let stranger = TrustStore::load_dir(other.path()).unwrap();

    let pkg = Package::open(&path).unwrap();
    let report = inspect(&pkg, &stranger);
    assert_eq!(report.signatures.len(), 1);
    assert_eq!(report.signatures[0].key_id, bench.key_id);
    assert_eq!(report.signatures[0].status, SignatureStatus::UnknownKey);
    let trusted = inspect(&pkg, &bench.trust);
    assert_eq!(
        trusted.signatures[0].status,
        SignatureStatus::Trusted {
            name: "test-release".into(),
            scope: KeyScope::Any
        }
    );
    let json = serde_json::to_value(&trusted).unwrap();
    assert_eq!(json["signatures"][0]["status"], "trusted");
    assert_eq!(json["signatures"][0]["key_id"], bench.key_id.to_string());
    assert_eq!(
        json["manifest"]["images"][1]["sparse"]["expanded_size"],
        192
    );

    assert!(
        matches!(pkg.verify(&stranger), Err(PackageError::UnknownKey(id)) if id == bench.key_id)
    );
    assert!(matches!(
        Package::open(&path).unwrap().verify(&TrustStore::empty()),
        Err(PackageError::UnknownKey(_))
    ));
}

/// Rebuilds the bench's small package with a manifest edited as JSON text and the given
/// signature entries.
fn repackage(
    bench: &Bench,
    edit: impl FnOnce(String) -> String,
    sign: impl FnOnce(&[u8]) -> Vec<([u8; 8], [u8; 64])>,
) -> PathBuf {
    let (path, boot, system) = small_package(bench);
    let manifest = serde_json::to_string(Package::open(&path).unwrap().manifest()).unwrap();
    let manifest = edit(manifest).into_bytes();
    let signatures = sign(&manifest);
    let crafted = bench.dir.path().join("crafted.flp");
    fs::write(
        &crafted,
        container(&manifest, &signatures, &[&boot, &system]),
    )
    .unwrap();
    crafted
}

#[test]
fn hand_built_container_matches_documented_layout() {
    let bench = Bench::new();
    let crafted = repackage(&bench, |m| m, |m| vec![bench.sign(m)]);
    let pkg = bench.open_verify(&crafted).unwrap();
    assert_eq!(pkg.manifest().images.len(), 2);
    assert_eq!(HEADER_LEN, 24);
    assert_eq!(SIGNATURE_ENTRY_LEN, 72);
}

#[test]
fn zero_signatures_are_rejected() {
    let bench = Bench::new();
    let crafted = repackage(&bench, |m| m, |_| vec![]);
    let pkg = Package::open(&crafted).unwrap();
    assert!(inspect(&pkg, &bench.trust).signatures.is_empty());
    assert!(matches!(
        pkg.verify(&bench.trust),
        Err(PackageError::NoSignatures)
    ));
}

#[test]
fn duplicate_signatures_are_rejected() {
    let bench = Bench::new();
    let crafted = repackage(&bench, |m| m, |m| vec![bench.sign(m), bench.sign(m)]);
    let pkg = Package::open(&crafted).unwrap();
    let report = inspect(&pkg, &bench.trust);
    assert_eq!(report.signatures[1].status, SignatureStatus::Duplicate);
    assert!(matches!(
        pkg.verify(&bench.trust),
        Err(PackageError::DuplicateSignature(id)) if id == bench.key_id
    ));
}

#[test]
fn a_valid_extra_signature_does_not_excuse_an_unknown_one() {
    let bench = Bench::new();
    let other = tempfile::tempdir().unwrap();
    let stranger = generate_key("stranger", other.path()).unwrap();
    let crafted = repackage(
        &bench,
        |m| m,
        |m| vec![bench.sign(m), sign_with(&stranger.secret_path, m)],
    );
    assert!(matches!(
        bench.open_verify(&crafted),
        Err(PackageError::UnknownKey(id)) if id == stranger.key_id
    ));
}

#[test]
fn manifest_must_name_its_actual_signer() {
    let bench = Bench::new();
    let crafted = repackage(
        &bench,
        |m| m.replace(&bench.key_id.to_string(), "0000000000000000"),
        |m| vec![bench.sign(m)],
    );
    assert!(matches!(
        bench.open_verify(&crafted),
        Err(PackageError::SignerMismatch(_))
    ));
}

#[test]
fn bad_signature_is_rejected() {
    let bench = Bench::new();
    // The signature covers security_version 1; the package ships 9.
    let crafted = repackage(
        &bench,
        |m| m.replace("\"security_version\":1", "\"security_version\":9"),
        |m| {
            let signed = String::from_utf8(m.to_vec()).unwrap();
            let signed = signed.replace("\"security_version\":9", "\"security_version\":1");
            vec![bench.sign(signed.as_bytes())]
        },
    );
    let pkg = Package::open(&crafted).unwrap();
    assert_eq!(pkg.manifest().security_version, 9);
    assert_eq!(
        inspect(&pkg, &bench.trust).signatures[0].status,
        SignatureStatus::BadSignature
    );
    assert!(
        matches!(pkg.verify(&bench.trust), Err(PackageError::BadSignature(id)) if id == bench.key_id)
    );
}

#[test]
fn duplicate_json_key_in_signed_manifest_is_rejected() {
    let bench = Bench::new();
    // Validly signed, but the manifest says `security_version` twice: two readers could
    // disagree on which one counts, so the package must be refused outright.
    let crafted = repackage(
        &bench,
        |m| m.replacen('{', "{\"security_version\":999,", 1),
        |m| vec![bench.sign(m)],
    );
    match Package::open(&crafted) {
        Err(PackageError::ManifestInvalid(msg)) => {
            assert!(msg.contains("duplicate field"), "{msg}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_signed_manifest_field_is_rejected() {
    let bench = Bench::new();
    let crafted = repackage(
        &bench,
        |m| {
            m.replacen(
                "\"partition\":\"boot\"",
                "\"partition\":\"boot\",\"offset\":0",
                1,
            )
        },
        |m| vec![bench.sign(m)],
    );
    match Package::open(&crafted) {
        Err(PackageError::ManifestInvalid(msg)) => assert!(msg.contains("unknown field"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn duplicate_partition_in_signed_manifest_is_rejected() {
    let bench = Bench::new();
    let crafted = repackage(
        &bench,
        |m| m.replace("\"partition\":\"system\"", "\"partition\":\"boot\""),
        |m| vec![bench.sign(m)],
    );
    assert!(matches!(
        Package::open(&crafted),
        Err(PackageError::DuplicatePartition(p)) if p == "boot"
    ));
}

#[test]
fn huge_declared_size_is_rejected_without_allocating() {
    let bench = Bench::new();
    let crafted = repackage(
        &bench,
        |m| m.replacen("\"size\":200", &format!("\"size\":{}", 1u64 << 63), 1),
        |m| vec![bench.sign(m)],
    );
    assert!(matches!(
        Package::open(&crafted),
        Err(PackageError::DeclaredSizeTooLarge { partition, size }) if partition == "boot" && size == 1 << 63
    ));
}

#[test]
fn sparse_record_must_match_the_image() {
    let bench = Bench::new();
    let crafted = repackage(
        &bench,
        |m| {
            m.replace(
                "\"blk_sz\":64,\"total_blks\":3,\"expanded_size\":192",
                "\"blk_sz\":32,\"total_blks\":6,\"expanded_size\":192",
            )
        },
        |m| vec![bench.sign(m)],
    );
    assert!(matches!(
        bench.open_verify(&crafted),
        Err(PackageError::SparseInfoInconsistent { partition }) if partition == "system"
    ));
}

#[test]
fn header_fields_are_checked() {
    let bench = Bench::new();
    let (path, _, _) = small_package(&bench);
    let good = fs::read(&path).unwrap();
    let cases: [(usize, &[u8], Check); 3] = [
        (0, b"PK\x03\x04", |e| matches!(e, PackageError::BadMagic)),
        (8, &2u32.to_le_bytes(), |e| {
            matches!(e, PackageError::UnsupportedVersion(2))
        }),
        (12, &(2u64 << 20).to_le_bytes(), |e| {
            matches!(e, PackageError::ManifestTooLarge { .. })
        }),
    ];
    for (offset, patch, expected) in cases {
        let mut bytes = good.clone();
        bytes[offset..offset + patch.len()].copy_from_slice(patch);
        fs::write(&path, &bytes).unwrap();
        let err = Package::open(&path).unwrap_err();
        assert!(expected(&err), "{err}");
    }
}

#[test]
fn image_reader_detects_short_read_and_later_modification() {
    let bench = Bench::new();
    let (path, boot, _) = small_package(&bench);
    let pkg = bench.open_verify(&path).unwrap();

    let mut reader = pkg.open_image(0).unwrap();
    let mut half = vec![0u8; 100];
    reader.read_exact(&mut half).unwrap();
    assert_eq!(half, boot[..100]);
    assert!(matches!(
        reader.finish(),
        Err(PackageError::SizeMismatch { partition, expected: 200, actual: 100 }) if partition == "boot"
    ));

    // Another process rewrites one byte of the boot image after verification. (On Windows
    // the package is opened denying writers, so the rewrite itself is refused.)
    let boot_offset = fs::metadata(&path).unwrap().len() - 120 - 200;
    let mut writer = match fs::OpenOptions::new().write(true).open(&path) {
        Ok(writer) => writer,
        Err(_) if cfg!(windows) => return,
        Err(e) => panic!("{e}"),
    };
    writer.seek(SeekFrom::Start(boot_offset + 50)).unwrap();
    writer.write_all(&[!boot[50]]).unwrap();
    drop(writer);

    // The block holding the changed byte is checked against its signed hash before any
    // of it is handed out.
    let mut reader = pkg.open_image(0).unwrap();
    let mut sent = Vec::new();
    let err = reader.read_to_end(&mut sent).unwrap_err();
    assert!(
        err.to_string().contains("changed since it was verified"),
        "{err}"
    );
    assert!(
        sent.is_empty(),
        "no byte of the changed block was handed out"
    );
    assert!(matches!(
        reader.finish(),
        Err(PackageError::SizeMismatch { partition, .. }) if partition == "boot"
    ));
    // The untouched image still reads and checks out.
    assert_eq!(read_all(&pkg, 1).len(), 120);
}

#[test]
fn pack_rejects_bad_manifests_and_images() {
    let bench = Bench::new();
    let boot = pattern(100, 3);
    let dup = format!("{MINIMAL}[[image]]\npartition = \"boot\"\nfile = \"boot2.img\"\n");
    let unknown = MINIMAL.replace("[[target]]", "flash_everything = true\n[[target]]");
    let unknown_in_image = format!("{MINIMAL}offset = 4096\n");
    let traversal = MINIMAL.replace("file = \"boot.img\"", "file = \"../boot.img\"");
    let absolute = MINIMAL.replace("file = \"boot.img\"", "file = \"/etc/passwd\"");
    let bad_partition = MINIMAL.replace("partition = \"boot\"", "partition = \"boot;reboot\"");
    let bad_version = MINIMAL.replace("2.1.0", "2.1");
    let battery = MINIMAL.replace("= 30", "= 101");
    let no_target = MINIMAL.replace("[[target]]\nproduct = \"zte-demo-phone\"\n", "");
    let bad_product = MINIMAL.replace("zte-demo-phone", "zte\\u001b[2J");
    let cases: Vec<(&str, Check)> = vec![
        (
            &dup,
            |e| matches!(e, PackageError::DuplicatePartition(p) if p == "boot"),
        ),
        (
            &unknown,
            |e| matches!(e, PackageError::ManifestTomlInvalid { message, .. } if message.contains("unknown field")),
        ),
        (&unknown_in_image, |e| {
            matches!(e, PackageError::ManifestTomlInvalid { .. })
        }),
        (&traversal, |e| {
            matches!(e, PackageError::ImagePathInvalid(_))
        }),
        (&absolute, |e| {
            matches!(e, PackageError::ImagePathInvalid(_))
        }),
        (&bad_partition, |e| {
            matches!(
                e,
                PackageError::InvalidName {
                    what: "partition name",
                    ..
                }
            )
        }),
        (&bad_version, |e| {
            matches!(e, PackageError::ManifestTomlInvalid { .. })
        }),
        (&battery, |e| {
            matches!(e, PackageError::BatteryPercentOutOfRange(101))
        }),
        (&no_target, |e| {
            matches!(e, PackageError::EmptyList { what: "targets" })
        }),
        (&bad_product, |e| {
            matches!(
                e,
                PackageError::InvalidName {
                    what: "product",
                    ..
                }
            )
        }),
    ];
    for (toml, expected) in cases {
        let err = bench
            .pack(toml, &[("boot.img", &boot), ("boot2.img", &boot)])
            .unwrap_err();
        assert!(expected(&err), "{err}\n{toml}");
    }

    let err = bench.pack(MINIMAL, &[("boot.img", b"")]).unwrap_err();
    assert!(matches!(err, PackageError::EmptyImage { partition } if partition == "boot"));

    let mut broken_sparse = sparse_image(64);
    broken_sparse.truncate(60);
    let err = bench
        .pack(MINIMAL, &[("boot.img", &broken_sparse)])
        .unwrap_err();
    assert!(matches!(err, PackageError::SparseInvalid { .. }), "{err}");
    let mut trailing_sparse = sparse_image(64);
    trailing_sparse.extend_from_slice(b"junk");
    let err = bench
        .pack(MINIMAL, &[("boot.img", &trailing_sparse)])
        .unwrap_err();
    assert!(
        matches!(err, PackageError::SparseTrailingData { extra: 4, .. }),
        "{err}"
    );

    #[cfg(unix)]
    {
        fs::remove_file(bench.release().join("boot.img")).unwrap();
        let target = bench.release().join("boot2.img");
        std::os::unix::fs::symlink(target, bench.release().join("boot.img")).unwrap();
        let err = bench.pack(MINIMAL, &[]).unwrap_err();
        assert!(matches!(err, PackageError::NotARegularFile { .. }), "{err}");
    }

    // Nothing was ever written at the output path, and no temp files remain.
    assert!(!bench.out().exists());
    assert_eq!(fs::read_dir(bench.dir.path()).unwrap().count(), 2);
}

#[test]
fn demo_key_signs_virtual_only_packages() {
    let bench = Bench::new();
    let demo_key =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/demo-keys/flashline-demo-INSECURE.key");
    let manifest = bench.release().join("manifest.toml");
    fs::write(&manifest, MINIMAL).unwrap();
    fs::write(bench.release().join("boot.img"), pattern(4096, 9)).unwrap();
    let summary = pack(&manifest, &demo_key, &bench.out()).unwrap();
    let pkg = Package::open(&summary.path)
        .unwrap()
        .verify(&TrustStore::demo())
        .unwrap();
    assert_eq!(pkg.signer().scope, KeyScope::VirtualOnly);
    assert_eq!(pkg.signer().name, "flashline-demo-INSECURE");
    assert_eq!(pkg.manifest_sha256(), summary.manifest_sha256);
    assert!(matches!(
        Package::open(&summary.path).unwrap().verify(&bench.trust),
        Err(PackageError::UnknownKey(_))
    ));
}

#[test]
fn not_a_package() {
    let bench = Bench::new();
    let dir = bench.dir.path();
    assert!(matches!(
        Package::open(dir),
        Err(PackageError::NotARegularFile { .. })
    ));
    assert!(matches!(
        Package::open(&dir.join("missing")),
        Err(PackageError::Io { .. })
    ));
    fs::write(
        dir.join("zip"),
        b"PK\x03\x04 this is a zip file, not a package",
    )
    .unwrap();
    assert!(matches!(
        Package::open(&dir.join("zip")),
        Err(PackageError::BadMagic)
    ));
}
