//! A hostile-package corpus, generated from one valid package: damaged, truncated, forged
//! and mismatched packages. Each must be refused with its own specific error, and the real
//! flash job run against a virtual phone must send the phone no command at all (refused at
//! verification, before the device is opened) or, for packages that are genuine but wrong
//! for the device, no writing command (refused at preflight).
//!
//! `cargo test --test hostile_packages -- --nocapture` prints the case → error table.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey};
use flashline::engine::{self, JobRequest, Outcome};
use flashline::package::container::{
    FORMAT_VERSION, HEADER_LEN, MAGIC, SIGNATURE_DOMAIN, SIGNATURE_ENTRY_LEN,
};
use flashline::package::{generate_key, pack, KeyId, Package, PackageError, TrustStore};
use flashline::sim::phone::{PhoneConfig, PhoneSim, RunningPhone};
use sha2::{Digest, Sha256};

const KIB: usize = 1024;
const MIB: u64 = 1024 * 1024;

/// How far a hostile package may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Refused by verification: the device is never opened.
    Verify,
    /// Genuine but wrong for the device: refused at preflight, before any write.
    Preflight,
    /// A damaged image byte: `flashline verify` (`Package::check`) names the image; a
    /// flash job finds it by its signed block hash as the image is sent, before the
    /// damaged block leaves, and never sends the committing `flash`.
    Send,
}

/// One corpus entry.
struct Case {
    name: String,
    bytes: Vec<u8>,
    stage: Stage,
    /// For `Verify`: whether the error is the specific one expected.
    expect: Box<dyn Fn(&PackageError) -> bool>,
    /// For `Preflight`: words the refusal must contain. For `Send`: the partition whose
    /// `flash` must never be sent.
    refusal: &'static str,
}

/// A signing key by its seed, to sign hand-built manifests.
struct Signer {
    key: SigningKey,
    id: [u8; 8],
}

impl Signer {
    fn load(key_file: &Path) -> Self {
        let text = fs::read_to_string(key_file).unwrap();
        let seed: [u8; 32] = hex::decode(text.split(' ').nth(1).unwrap())
            .unwrap()
            .try_into()
            .unwrap();
        let key = SigningKey::from_bytes(&seed);
        let id = Sha256::digest(key.verifying_key().as_bytes())[..8]
            .try_into()
            .unwrap();
        Signer { key, id }
    }

    fn sign(&self, manifest: &[u8]) -> ([u8; 8], [u8; 64]) {
        let message = [SIGNATURE_DOMAIN, manifest].concat();
        (self.id, self.key.sign(&message).to_bytes())
    }
}

/// Builds a container from the documented layout.
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

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[2] ^ seed)
        .collect()
}

/// The valid package the corpus is made from, taken apart.
struct Base {
    dir: tempfile::TempDir,
    key: Signer,
    stranger: Signer,
    trust: TrustStore,
    bytes: Vec<u8>,
    manifest: Vec<u8>,
    images: Vec<Vec<u8>>,
}

impl Base {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        fs::create_dir(&keys).unwrap();
        let made = generate_key("corpus-release", &keys).unwrap();
        let trust = TrustStore::load_dir(&keys).unwrap();
        let stranger_dir = dir.path().join("stranger");
        fs::create_dir(&stranger_dir).unwrap();
        let stranger = generate_key("stranger", &stranger_dir).unwrap();

        let path = Self::pack_with(dir.path(), &made.secret_path, "2.1.0", 7, "zte-demo-phone");
        let bytes = fs::read(&path).unwrap();
        let m = u64::from_le_bytes(bytes[12..20].try_into().unwrap()) as usize;
        let manifest = bytes[HEADER_LEN as usize..][..m].to_vec();
        let images_at = HEADER_LEN as usize + m + SIGNATURE_ENTRY_LEN as usize;
        let (boot, system) = bytes[images_at..].split_at(64 * KIB);
        Base {
            key: Signer::load(&made.secret_path),
            stranger: Signer::load(&stranger.secret_path),
            trust,
            images: vec![boot.to_vec(), system.to_vec()],
            manifest,
            bytes,
            dir,
        }
    }

    /// Packs the corpus images with the public pack API.
    fn pack_with(dir: &Path, key: &Path, version: &str, security: u64, product: &str) -> PathBuf {
        let src = dir.join(format!("src-{version}-{security}-{product}"));
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("boot.img"), pattern(64 * KIB, 0x11)).unwrap();
        fs::write(src.join("system.img"), pattern(96 * KIB, 0x22)).unwrap();
        fs::write(
            src.join("manifest.toml"),
            format!(
                "name = \"corpus\"\nversion = \"{version}\"\nsecurity_version = {security}\n\
                 min_battery_percent = 30\n[[target]]\nproduct = \"{product}\"\n\
                 [[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n\
                 [[image]]\npartition = \"system\"\nfile = \"system.img\"\n"
            ),
        )
        .unwrap();
        let out = src.join("package.flpkg");
        pack(&src.join("manifest.toml"), key, &out).unwrap();
        out
    }

    fn key_file(&self) -> PathBuf {
        self.dir.path().join("keys/corpus-release.key")
    }

    fn manifest_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.manifest).unwrap()
    }

    fn images(&self) -> Vec<&[u8]> {
        self.images.iter().map(Vec::as_slice).collect()
    }

    /// A correctly signed container around an edited manifest.
    fn resigned(&self, edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut json = self.manifest_json();
        edit(&mut json);
        let manifest = serde_json::to_vec(&json).unwrap();
        container(&manifest, &[self.key.sign(&manifest)], &self.images())
    }

    /// Offsets of the regions of the valid package.
    fn layout(&self) -> (usize, usize, usize) {
        let manifest_at = HEADER_LEN as usize;
        let signatures_at = manifest_at + self.manifest.len();
        let images_at = signatures_at + SIGNATURE_ENTRY_LEN as usize;
        (manifest_at, signatures_at, images_at)
    }

    fn flipped(&self, at: usize, mask: u8) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        bytes[at] ^= mask;
        bytes
    }
}

fn verify_case(
    name: impl Into<String>,
    bytes: Vec<u8>,
    expect: impl Fn(&PackageError) -> bool + 'static,
) -> Case {
    Case {
        name: name.into(),
        bytes,
        stage: Stage::Verify,
        expect: Box::new(expect),
        refusal: "",
    }
}

fn preflight_case(name: &str, bytes: Vec<u8>, refusal: &'static str) -> Case {
    Case {
        name: name.into(),
        bytes,
        stage: Stage::Preflight,
        expect: Box::new(|_| false),
        refusal,
    }
}

fn corpus(base: &Base) -> Vec<Case> {
    use PackageError as E;
    let total = base.bytes.len() as u64;
    let (manifest_at, signatures_at, images_at) = base.layout();
    let m = base.manifest.len();
    let boot_len = base.images[0].len();
    let mut cases = Vec::new();

    // A flipped byte in every region.
    cases.push(verify_case("flip: magic", base.flipped(0, 0x20), |e| {
        matches!(e, E::BadMagic)
    }));
    cases.push(verify_case(
        "flip: format version",
        base.flipped(8, 0x02),
        |e| matches!(e, E::UnsupportedVersion(3)),
    ));
    cases.push(verify_case(
        "flip: manifest length (high byte)",
        base.flipped(19, 0x80),
        |e| matches!(e, E::ManifestTooLarge { .. }),
    ));
    cases.push(verify_case(
        "flip: manifest length (low byte)",
        base.flipped(12, 0x01),
        |e| matches!(e, E::ManifestInvalid(_)),
    ));
    cases.push(verify_case(
        "flip: signature count 1 -> 0",
        base.flipped(20, 0x01),
        |e| matches!(e, E::TrailingBytes { extra } if *extra == SIGNATURE_ENTRY_LEN),
    ));
    cases.push(verify_case(
        "flip: signature count (high byte)",
        base.flipped(23, 0x40),
        |e| matches!(e, E::TooManySignatures { .. }),
    ));
    cases.push(verify_case(
        "flip: manifest syntax",
        base.flipped(manifest_at, 0x01),
        |e| matches!(e, E::ManifestInvalid(_)),
    ));
    let text = String::from_utf8(base.manifest.clone()).unwrap();
    let sha_digit = text.find("\"sha256\":\"").unwrap() + 10;
    let sha_digit = sha_digit
        + text[sha_digit..]
            .find(|c: char| c.is_ascii_digit())
            .unwrap();
    cases.push(verify_case(
        "flip: manifest image sha256 digit",
        base.flipped(manifest_at + sha_digit, 0x01),
        |e| matches!(e, E::BadSignature(_)),
    ));
    let security = text.find("\"security_version\":7").unwrap() + 19;
    cases.push(verify_case(
        "flip: manifest security_version 7 -> 6",
        base.flipped(manifest_at + security, 0x01),
        |e| matches!(e, E::BadSignature(_)),
    ));
    let key_id = base.key.id;
    cases.push(verify_case(
        "flip: signature table key id",
        base.flipped(signatures_at, 0x01),
        move |e| matches!(e, E::UnknownKey(id) if id.to_bytes()[0] == key_id[0] ^ 0x01),
    ));
    cases.push(verify_case(
        "flip: signature table signature",
        base.flipped(signatures_at + 8 + 40, 0x01),
        |e| matches!(e, E::BadSignature(_)),
    ));
    for (label, at, partition) in [
        ("flip: boot image first byte", images_at, "boot"),
        (
            "flip: boot image last byte",
            images_at + boot_len - 1,
            "boot",
        ),
        (
            "flip: system image middle",
            images_at + boot_len + 48 * KIB,
            "system",
        ),
        (
            "flip: system image last byte",
            base.bytes.len() - 1,
            "system",
        ),
    ] {
        cases.push(Case {
            stage: Stage::Send,
            refusal: partition,
            ..verify_case(
                label,
                base.flipped(at, 0x80),
                move |e| matches!(e, E::HashMismatch { partition: p } if p == partition),
            )
        });
    }

    // Truncation at many offsets.
    let mut cuts = vec![0, 1, 7, 8, 12, 19, 20, 23];
    cuts.extend([24, manifest_at + m / 2, signatures_at, signatures_at + 36]);
    cuts.extend([
        images_at,
        images_at + 1,
        images_at + boot_len,
        base.bytes.len() - 1,
    ]);
    for cut in cuts {
        let needed = if cut < HEADER_LEN as usize {
            HEADER_LEN
        } else if cut < images_at {
            images_at as u64
        } else {
            total
        };
        cases.push(verify_case(
            format!("truncated at {cut} of {total}"),
            base.bytes[..cut].to_vec(),
            move |e| matches!(e, E::Truncated { needed: n, actual } if *n == needed && *actual == cut as u64),
        ));
    }
    cases.push(verify_case(
        "one trailing byte",
        [&base.bytes[..], &[0]].concat(),
        |e| matches!(e, E::TrailingBytes { extra: 1 }),
    ));

    // Path-like and duplicate entry names, signed with the trusted key.
    for evil in ["../x", "/abs", "a/b", "C:\\x", "boot\0", "..", "-w"] {
        cases.push(verify_case(
            format!("partition name {evil:?}"),
            base.resigned(|json| json["images"][0]["partition"] = evil.into()),
            move |e| {
                matches!(e, E::InvalidName { what: "partition name", value, .. } if value == evil)
            },
        ));
    }
    cases.push(verify_case(
        "image file name with NUL",
        base.resigned(|json| json["images"][0]["file"] = "boot\0.img".into()),
        |e| {
            matches!(
                e,
                E::InvalidName {
                    what: "image file name",
                    ..
                }
            )
        },
    ));
    cases.push(verify_case(
        "duplicate partition",
        base.resigned(|json| json["images"][1]["partition"] = "boot".into()),
        |e| matches!(e, E::DuplicatePartition(p) if p == "boot"),
    ));
    let duplicate_key = {
        let doubled = text.replacen("{", "{\"name\":\"other\",", 1).into_bytes();
        container(&doubled, &[base.key.sign(&doubled)], &base.images())
    };
    cases.push(verify_case(
        "duplicate JSON field",
        duplicate_key,
        |e| matches!(e, E::ManifestInvalid(msg) if msg.contains("duplicate field")),
    ));

    // Declared sizes far beyond the file.
    cases.push(verify_case(
        "declared size 1 TiB",
        base.resigned(|json| {
            json["images"][1]["size"] = (1u64 << 40).into();
            // Without block hashes, which would no longer cover the declared size.
            json["images"][1].as_object_mut().unwrap().remove("blocks");
        }),
        move |e| matches!(e, E::Truncated { needed, .. } if *needed > 1 << 40),
    ));
    cases.push(verify_case(
        "block hashes that do not cover the declared size",
        base.resigned(|json| json["images"][1]["size"] = (1u64 << 40).into()),
        |e| matches!(e, E::ManifestInvalid(msg) if msg.contains("block hashes of system")),
    ));
    cases.push(verify_case(
        "block size too small",
        base.resigned(|json| json["images"][0]["blocks"]["size"] = 4096.into()),
        |e| matches!(e, E::ManifestInvalid(msg) if msg.contains("block size 4096")),
    ));
    cases.push(verify_case(
        "declared size u64::MAX",
        base.resigned(|json| json["images"][0]["size"] = u64::MAX.into()),
        |e| matches!(e, E::DeclaredSizeTooLarge { partition, .. } if partition == "boot"),
    ));

    // Signatures.
    cases.push(verify_case(
        "zero signatures",
        container(&base.manifest, &[], &base.images()),
        |e| matches!(e, E::NoSignatures),
    ));
    let stranger_id = KeyId::from_bytes(base.stranger.id);
    let stranger_manifest = {
        let mut json = base.manifest_json();
        json["signer"] = stranger_id.to_string().into();
        serde_json::to_vec(&json).unwrap()
    };
    cases.push(verify_case(
        "signed by an unknown key",
        container(
            &stranger_manifest,
            &[base.stranger.sign(&stranger_manifest)],
            &base.images(),
        ),
        move |e| matches!(e, E::UnknownKey(id) if *id == stranger_id),
    ));
    let other_bytes = base.manifest_json().to_string().replace("2.1.0", "9.9.9");
    let (id, signature_over_other) = base.key.sign(other_bytes.as_bytes());
    cases.push(verify_case(
        "signature over other bytes",
        container(
            &base.manifest,
            &[(id, signature_over_other)],
            &base.images(),
        ),
        |e| matches!(e, E::BadSignature(_)),
    ));
    cases.push(verify_case(
        "the same signature twice",
        container(
            &base.manifest,
            &[base.key.sign(&base.manifest), base.key.sign(&base.manifest)],
            &base.images(),
        ),
        |e| matches!(e, E::DuplicateSignature(_)),
    ));
    cases.push(verify_case(
        "trusted signature plus an unknown one",
        container(
            &base.manifest,
            &[
                base.key.sign(&base.manifest),
                base.stranger.sign(&base.manifest),
            ],
            &base.images(),
        ),
        move |e| matches!(e, E::UnknownKey(id) if *id == stranger_id),
    ));

    // Genuine packages that do not fit the device (phone: zte-demo-phone, 2.0.0, security 7).
    let genuine = |version: &str, security: u64, product: &str| {
        fs::read(Base::pack_with(
            base.dir.path(),
            &base.key_file(),
            version,
            security,
            product,
        ))
        .unwrap()
    };
    cases.push(preflight_case(
        "wrong model",
        genuine("2.1.0", 7, "other-phone"),
        "the package is for other-phone, but the device is a zte-demo-phone",
    ));
    cases.push(preflight_case(
        "downgrade: version",
        genuine("1.0.0", 7, "zte-demo-phone"),
        "is older than the firmware on the device",
    ));
    cases.push(preflight_case(
        "downgrade: security version",
        genuine("2.1.0", 3, "zte-demo-phone"),
        "would be a security downgrade",
    ));
    cases
}

fn request(base: &Base, package: &Path, phone: &RunningPhone) -> JobRequest {
    common::virtual_job(
        package,
        base.trust.clone(),
        &phone.device_address(),
        base.dir.path(),
    )
}

fn is_write(command: &str) -> bool {
    ["download:", "flash:", "erase:", "set_active"]
        .iter()
        .any(|w| command.starts_with(w))
}

#[test]
fn every_hostile_package_is_refused_with_its_own_error_before_any_write() {
    let base = Base::new();
    let phone = PhoneSim::start(
        "127.0.0.1:0".parse().unwrap(),
        &base.dir.path().join("phone"),
        PhoneConfig {
            partitions: vec![("boot".into(), MIB), ("system".into(), MIB)],
            ..PhoneConfig::default()
        },
    )
    .unwrap();
    let cases = corpus(&base);
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let path = base.dir.path().join(format!("case-{n}.flpkg"));
        fs::write(&path, &case.bytes).unwrap();
        let seen = phone.commands().len();
        let report = engine::run(&request(&base, &path, &phone), &mut |_| {});
        let sent = phone.commands()[seen..].to_vec();
        let error = report.error.clone().unwrap_or_default();
        match case.stage {
            Stage::Verify => {
                let direct = Package::open(&path).and_then(|p| p.verify(&base.trust));
                match direct {
                    Ok(_) => failures.push(format!("{}: verified", case.name)),
                    Err(e) if !(case.expect)(&e) => {
                        failures.push(format!("{}: unexpected error: {e:?}", case.name))
                    }
                    Err(e) => {
                        if report.outcome != Outcome::PackageRejected
                            || error != format!("package rejected: {e}")
                        {
                            failures.push(format!(
                                "{}: job ended {:?}: {error}",
                                case.name, report.outcome
                            ));
                        }
                    }
                }
                if !sent.is_empty() {
                    failures.push(format!("{}: the device got {sent:?}", case.name));
                }
            }
            Stage::Send => {
                let checked = Package::open(&path).and_then(|p| p.check(&base.trust));
                match checked {
                    Ok(_) => failures.push(format!("{}: checked good", case.name)),
                    Err(e) if !(case.expect)(&e) => {
                        failures.push(format!("{}: unexpected error: {e:?}", case.name))
                    }
                    Err(_) => {}
                }
                if report.outcome != Outcome::DeviceError
                    || !error.contains("changed since it was verified")
                {
                    failures.push(format!(
                        "{}: job ended {:?}: {error}",
                        case.name, report.outcome
                    ));
                }
                if sent.iter().any(|c| *c == format!("flash:{}", case.refusal)) {
                    failures.push(format!("{}: the device got {sent:?}", case.name));
                }
            }
            Stage::Preflight => {
                if report.outcome != Outcome::PreflightRefused || !error.contains(case.refusal) {
                    failures.push(format!(
                        "{}: job ended {:?}: {error}",
                        case.name, report.outcome
                    ));
                }
                if sent.iter().any(|c| is_write(c)) {
                    failures.push(format!("{}: the device got {sent:?}", case.name));
                }
            }
        }
        table.push((case.name.clone(), case.stage, sent.len(), error));
    }

    println!("{:<44} {:<9} {:>4}  error", "case", "stage", "cmds");
    for (name, stage, sent, error) in &table {
        println!("{name:<44} {:<9} {sent:>4}  {error}", format!("{stage:?}"));
    }
    println!(
        "{} hostile packages, {} refused as expected",
        table.len(),
        table.len() - failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(table.len() >= 50, "the corpus shrank to {}", table.len());

    // The corpus is made from a package that does flash.
    let good = base.dir.path().join("good.flpkg");
    fs::write(&good, &base.bytes).unwrap();
    let report = engine::run(&request(&base, &good, &phone), &mut |_| {});
    assert_eq!(report.outcome, Outcome::Success, "{:?}", report.error);
    assert!(phone.commands().iter().any(|c| c == "flash:system"));
}
