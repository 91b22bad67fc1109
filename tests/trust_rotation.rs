//! The signed trust root: a chain of roots, each approved by a threshold of distinct keys
//! of the one before, never going back (not even by deleting or replacing `root.json`),
//! never holding the demo key, refused once expired; a key rotated out stops being trusted
//! for packages, and a key signs only for the products its roles delegate to it, with each
//! role's threshold.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flashline::package::root::{self, Expiry, Role, RootState, RETIRED_KEYS_DIR, ROOT_FILE};
use flashline::package::{
    generate_key, pack, GeneratedKey, Package, PackageError, PublicKey, RootDocument, RootKey,
    SignedRoot, TrustStore,
};

const DEMO_PUB: &str = "assets/demo-keys/flashline-demo-INSECURE.pub";
const DEMO_KEY: &str = "assets/demo-keys/flashline-demo-INSECURE.key";

/// A folder of key pairs and a trust folder.
struct Bench {
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Self {
        let bench = Bench {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir(bench.path("keys")).unwrap();
        std::fs::create_dir(bench.path("trust")).unwrap();
        bench
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn trust(&self) -> PathBuf {
        self.path("trust")
    }

    /// The station's record of installed roots (in its home, outside the trust folder).
    fn state(&self) -> RootState {
        RootState::at(&self.path("home/trust-state.json"))
    }

    fn key(&self, name: &str) -> GeneratedKey {
        let keys = self.path("keys");
        if keys.join(format!("{name}.key")).exists() {
            let public = PublicKey::load(&keys.join(format!("{name}.pub"))).unwrap();
            return GeneratedKey {
                key_id: public.id(),
                secret_path: keys.join(format!("{name}.key")),
                public_path: keys.join(format!("{name}.pub")),
            };
        }
        generate_key(name, &keys).unwrap()
    }

    fn root_key(&self, name: &str) -> RootKey {
        RootKey::of(&PublicKey::load(&self.key(name).public_path).unwrap())
    }

    /// A root of `version` with root keys `keys` and `threshold`, signed by `signers`, valid
    /// for an hour, whose one role lets each of its keys sign for every product.
    fn root(&self, version: u64, threshold: u32, keys: &[&str], signers: &[&str]) -> SignedRoot {
        let role = Role {
            name: "all".into(),
            products: vec!["*".into()],
            threshold: 1,
            keys: keys.iter().map(|k| self.root_key(k)).collect(),
        };
        self.root_full(
            version,
            threshold,
            keys,
            signers,
            vec![role],
            Duration::from_secs(3600),
        )
    }

    /// A root of `version` with root keys `keys` and `threshold`, signed by `signers`, with
    /// `roles`, expiring `valid` from now.
    fn root_full(
        &self,
        version: u64,
        threshold: u32,
        keys: &[&str],
        signers: &[&str],
        roles: Vec<Role>,
        valid: Duration,
    ) -> SignedRoot {
        let document = RootDocument {
            version,
            expires: Expiry::after(valid),
            threshold,
            keys: keys.iter().map(|k| self.root_key(k)).collect(),
            roles,
        };
        let signers: Vec<PathBuf> = signers.iter().map(|s| self.key(s).secret_path).collect();
        SignedRoot::sign(document, &signers).unwrap()
    }

    /// A role over `products` for `keys` with `threshold`.
    fn role(&self, name: &str, products: &[&str], threshold: u32, keys: &[&str]) -> Role {
        Role {
            name: name.into(),
            products: products.iter().map(|p| p.to_string()).collect(),
            threshold,
            keys: keys.iter().map(|k| self.root_key(k)).collect(),
        }
    }

    /// A one-image package for zte-demo-phone signed by `key`.
    fn package(&self, key: &str) -> PathBuf {
        self.package_for(key, "zte-demo-phone")
    }

    /// A one-image package for `product` signed by `key`.
    fn package_for(&self, key: &str, product: &str) -> PathBuf {
        let src = self.path(&format!("src-{key}-{product}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("boot.img"), vec![0x5a; 4096]).unwrap();
        std::fs::write(
            src.join("manifest.toml"),
            format!(
                "name = \"p\"\nversion = \"1.0.0\"\nsecurity_version = 1\nmin_battery_percent = 0\n\
                 [[target]]\nproduct = \"{product}\"\n\
                 [[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n"
            ),
        )
        .unwrap();
        let out = self.path(&format!("{key}-{product}.flpkg"));
        pack(&src.join("manifest.toml"), &self.key(key).secret_path, &out).unwrap();
        out
    }

    fn verify(&self, package: &Path) -> Result<(), PackageError> {
        let trust = TrustStore::load_dir_with(&self.trust(), &self.state())?;
        Package::open(package)?.verify(&trust).map(drop)
    }
}

/// Re-parses `root` from its file text after `edit`, as a station reading a file would.
fn edited(root: &SignedRoot, edit: impl FnOnce(&mut serde_json::Value)) -> SignedRoot {
    let mut json: serde_json::Value = serde_json::from_str(&root.to_file_text()).unwrap();
    edit(&mut json);
    SignedRoot::parse(json.to_string().as_bytes(), Path::new("edited.json")).unwrap()
}

#[test]
fn a_rotation_chain_is_accepted_step_by_step() {
    let bench = Bench::new();
    let v1 = bench.root(1, 2, &["a", "b", "c"], &["a", "b"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    // 2-of-3 of v1 approve; 2-of-2 of v2 sign themselves.
    let v2 = bench.root(2, 2, &["b", "c", "d"], &["a", "c", "b", "d"]);
    assert_eq!(
        root::update(&bench.trust(), &v2, &bench.state()).unwrap(),
        1
    );
    let v3 = bench.root(3, 1, &["d", "e"], &["c", "d", "e"]);
    assert_eq!(
        root::update(&bench.trust(), &v3, &bench.state()).unwrap(),
        2
    );

    let installed = root::installed(&bench.trust()).unwrap().unwrap();
    assert_eq!(installed.version(), 3);
    let trust = TrustStore::load_dir_with(&bench.trust(), &bench.state()).unwrap();
    let mut ids: Vec<_> = trust.keys().map(|k| k.id()).collect();
    let mut want = vec![bench.key("d").key_id, bench.key("e").key_id];
    ids.sort();
    want.sort();
    assert_eq!(ids, want);
    assert!(bench.path("trust").join(ROOT_FILE).is_file());
    // A station may also skip a version: 3 → 5 signed by 3's keys.
    let v5 = bench.root(5, 1, &["e"], &["d", "e"]);
    assert_eq!(
        root::update(&bench.trust(), &v5, &bench.state()).unwrap(),
        3
    );
}

#[test]
fn below_the_old_threshold_is_refused() {
    let bench = Bench::new();
    let v1 = bench.root(1, 2, &["a", "b", "c"], &["a", "b", "c"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    let v2 = bench.root(2, 1, &["d"], &["a", "d"]);
    let err = root::update(&bench.trust(), &v2, &bench.state()).unwrap_err();
    assert!(
        matches!(
            err,
            PackageError::RootBelowThreshold {
                by: "the current root",
                signed: 1,
                threshold: 2
            }
        ),
        "{err}"
    );
    assert_eq!(
        root::installed(&bench.trust()).unwrap().unwrap().version(),
        1
    );
}

#[test]
fn a_new_root_must_meet_its_own_threshold() {
    let bench = Bench::new();
    let v1 = bench.root(1, 1, &["a"], &["a"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    // Approved by the old root, but only 1 of the 2 new keys it needs signed it.
    let v2 = bench.root(2, 2, &["b", "c"], &["a", "b"]);
    let err = root::update(&bench.trust(), &v2, &bench.state()).unwrap_err();
    assert!(
        matches!(
            err,
            PackageError::RootBelowThreshold {
                by: "the root itself",
                signed: 1,
                threshold: 2
            }
        ),
        "{err}"
    );
    // The same holds for a first root.
    let unusable = bench.root(1, 2, &["b", "c"], &["b"]);
    let fresh = bench.path("fresh-trust");
    assert!(matches!(
        root::install_first(&fresh, &unusable, &bench.state()),
        Err(PackageError::RootBelowThreshold { .. })
    ));
    assert!(!fresh.join(ROOT_FILE).exists());
}

#[test]
fn the_same_key_signing_twice_counts_once() {
    let bench = Bench::new();
    let v1 = bench.root(1, 2, &["a", "b"], &["a", "b"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    let v2 = bench.root(2, 1, &["a", "b"], &["a"]);
    let doubled = edited(&v2, |json| {
        let signatures = json["signatures"].as_array_mut().unwrap();
        let first = signatures[0].clone();
        signatures.push(first.clone());
        signatures.push(first);
    });
    assert_eq!(doubled.signature_key_ids().count(), 3);
    let err = root::update(&bench.trust(), &doubled, &bench.state()).unwrap_err();
    assert!(
        matches!(
            err,
            PackageError::RootBelowThreshold {
                signed: 1,
                threshold: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rollback_and_replay_are_refused() {
    let bench = Bench::new();
    let v1 = bench.root(1, 1, &["a"], &["a"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    let v2 = bench.root(2, 1, &["a"], &["a"]);
    root::update(&bench.trust(), &v2, &bench.state()).unwrap();
    for (old, version) in [(&v1, 1), (&v2, 2)] {
        let err = root::update(&bench.trust(), old, &bench.state()).unwrap_err();
        assert!(
            matches!(err, PackageError::RootRollback { current: 2, offered } if offered == version),
            "{err}"
        );
    }
    // Installing a "first" root over an existing one is refused too.
    assert!(matches!(
        root::install_first(&bench.trust(), &v1, &bench.state()),
        Err(PackageError::RootAlreadyInstalled(_))
    ));
}

#[test]
fn signatures_by_unknown_keys_count_for_nothing() {
    let bench = Bench::new();
    let v1 = bench.root(1, 1, &["a"], &["a"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    let v2 = bench.root(2, 1, &["x"], &["x", "y", "z"]);
    let err = root::update(&bench.trust(), &v2, &bench.state()).unwrap_err();
    assert!(
        matches!(
            err,
            PackageError::RootBelowThreshold {
                by: "the current root",
                signed: 0,
                threshold: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn the_demo_key_is_never_part_of_a_root() {
    let bench = Bench::new();
    let demo = PublicKey::load(Path::new(DEMO_PUB)).unwrap();
    let document = RootDocument {
        version: 1,
        expires: Expiry::after(Duration::from_secs(3600)),
        threshold: 1,
        keys: vec![RootKey::of(&demo)],
        roles: vec![Role {
            name: "all".into(),
            products: vec!["*".into()],
            threshold: 1,
            keys: vec![RootKey::of(&demo)],
        }],
    };
    assert!(matches!(
        SignedRoot::sign(document, &[PathBuf::from(DEMO_KEY)]),
        Err(PackageError::RootContainsDemoKey)
    ));
    // A hand-made file listing it next to a real key is refused when read.
    let v1 = bench.root(1, 1, &["a"], &["a"]);
    let text = v1.to_file_text();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["signed"]["keys"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::to_value(RootKey::of(&demo)).unwrap());
    assert!(matches!(
        SignedRoot::parse(json.to_string().as_bytes(), Path::new("r.json")),
        Err(PackageError::RootContainsDemoKey)
    ));
    // And a station whose installed root was edited to hold it trusts nothing from it.
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    std::fs::write(bench.trust().join(ROOT_FILE), json.to_string()).unwrap();
    assert!(matches!(
        TrustStore::load_dir_with(&bench.trust(), &bench.state()),
        Err(PackageError::RootContainsDemoKey)
    ));
}

#[test]
fn a_tampered_root_is_refused() {
    let bench = Bench::new();
    let v1 = bench.root(1, 1, &["a", "b"], &["a"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    let v2 = bench.root(2, 1, &["a", "b"], &["a", "b"]);
    let tampered = edited(&v2, |json| {
        json["signed"]["keys"][1]["name"] = "mallory".into()
    });
    let err = root::update(&bench.trust(), &tampered, &bench.state()).unwrap_err();
    assert!(matches!(err, PackageError::RootBadSignature(_)), "{err}");
    let raised = edited(&v2, |json| json["signed"]["version"] = 9.into());
    assert!(matches!(
        root::update(&bench.trust(), &raised, &bench.state()),
        Err(PackageError::RootBadSignature(_))
    ));
    // An installed root edited on disk stops the station from trusting anything.
    let text = std::fs::read_to_string(bench.trust().join(ROOT_FILE)).unwrap();
    std::fs::write(
        bench.trust().join(ROOT_FILE),
        text.replace("\"threshold\": 1", "\"threshold\": 2"),
    )
    .unwrap();
    assert!(matches!(
        TrustStore::load_dir_with(&bench.trust(), &bench.state()),
        Err(PackageError::RootBadSignature(_) | PackageError::RootBelowThreshold { .. })
    ));
}

#[test]
fn a_key_rotated_out_no_longer_verifies_packages() {
    let bench = Bench::new();
    let by_a = bench.package("a");
    let by_b = bench.package("b");
    // Before any root: a loose .pub file is trusted.
    std::fs::copy(bench.key("a").public_path, bench.trust().join("a.pub")).unwrap();
    bench.verify(&by_a).unwrap();

    let v1 = bench.root(1, 1, &["a", "b"], &["a"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    bench.verify(&by_a).unwrap();
    bench.verify(&by_b).unwrap();

    // `init` moved the loose a.pub out of the way.
    assert!(!bench.trust().join("a.pub").exists());
    assert!(bench.trust().join(RETIRED_KEYS_DIR).join("a.pub").is_file());
    let v2 = bench.root(2, 1, &["b"], &["a", "b"]);
    root::update(&bench.trust(), &v2, &bench.state()).unwrap();
    // a.pub put back in the folder still counts for nothing: the root decides.
    std::fs::copy(bench.key("a").public_path, bench.trust().join("a.pub")).unwrap();
    let err = bench.verify(&by_a).unwrap_err();
    assert!(
        matches!(err, PackageError::UnknownKey(id) if id == bench.key("a").key_id),
        "{err}"
    );
    bench.verify(&by_b).unwrap();
}

#[test]
fn the_cli_rotates_installs_and_updates() {
    let bench = Bench::new();
    for k in ["a", "b", "c"] {
        bench.key(k);
    }
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flashline"))
            .args(args)
            .env("FLASHLINE_HOME", bench.path("home"))
            .output()
            .unwrap()
    };
    let keys = bench.path("keys");
    let k = |name: &str| keys.join(name).to_str().unwrap().to_string();
    let r1 = bench.path("root-1.json");
    let r2 = bench.path("root-2.json");
    let out = run(&[
        "trust",
        "rotate",
        "--key",
        &k("a.pub"),
        "--key",
        &k("b.pub"),
        "--threshold",
        "2",
        "--sign",
        &k("a.key"),
        "--sign",
        &k("b.key"),
        "-o",
        r1.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["trust", "init", r1.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(bench.path("home/trust").join(ROOT_FILE).is_file());

    // Only one of the two required old signatures: refused before anything is written.
    let out = run(&[
        "trust",
        "rotate",
        "--previous",
        r1.to_str().unwrap(),
        "--key",
        &k("c.pub"),
        "--threshold",
        "1",
        "--sign",
        &k("a.key"),
        "--sign",
        &k("c.key"),
        "-o",
        r2.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("1 distinct keys of the current root; 2 are required"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!r2.exists());

    let out = run(&[
        "trust",
        "rotate",
        "--previous",
        r1.to_str().unwrap(),
        "--key",
        &k("c.pub"),
        "--threshold",
        "1",
        "--sign",
        &k("a.key"),
        "--sign",
        &k("b.key"),
        "--sign",
        &k("c.key"),
        "-o",
        r2.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["trust", "update", r2.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("version 1 replaced by version 2"));
    // Replaying the old root is a rollback.
    let out = run(&["trust", "update", r1.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("roots never go back"));

    let help = run(&["trust", "--help"]);
    let help = String::from_utf8_lossy(&help.stdout);
    for word in ["rotate", "init", "update", "threshold"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn deleting_the_root_is_a_rollback_and_loose_keys_never_return() {
    let bench = Bench::new();
    let by_a = bench.package("a");
    std::fs::copy(bench.key("a").public_path, bench.trust().join("a.pub")).unwrap();
    let v1 = bench.root(1, 1, &["b"], &["b"]);
    let moved = root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    assert_eq!(moved, [bench.trust().join(RETIRED_KEYS_DIR).join("a.pub")]);
    let v2 = bench.root(2, 1, &["b"], &["b"]);
    root::update(&bench.trust(), &v2, &bench.state()).unwrap();
    assert!(matches!(
        bench.verify(&by_a),
        Err(PackageError::UnknownKey(_))
    ));

    // The attacker removes root.json and puts a.pub back: before, loose keys would rule.
    std::fs::remove_file(bench.trust().join(ROOT_FILE)).unwrap();
    std::fs::copy(bench.key("a").public_path, bench.trust().join("a.pub")).unwrap();
    let err = bench.verify(&by_a).unwrap_err();
    assert!(
        matches!(&err, PackageError::RootRolledBack { found, installed: 2, .. } if found == "missing"),
        "{err}"
    );
    assert!(err.to_string().contains("trust update"), "{err}");
    // Nor can `init` start the folder over with an older root.
    assert!(matches!(
        root::install_first(&bench.trust(), &v1, &bench.state()),
        Err(PackageError::RootRollback {
            current: 2,
            offered: 1
        })
    ));
    // Putting the same root back restores the station.
    std::fs::write(bench.trust().join(ROOT_FILE), v2.to_file_text()).unwrap();
    std::fs::remove_file(bench.trust().join("a.pub")).unwrap();
    bench.verify(&bench.package("b")).unwrap();
}

#[test]
fn an_older_root_put_in_place_is_refused() {
    let bench = Bench::new();
    let v1 = bench.root(1, 1, &["a", "b"], &["a", "b"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    let v2 = bench.root(2, 1, &["b"], &["a", "b"]);
    root::update(&bench.trust(), &v2, &bench.state()).unwrap();
    // v1 still trusted key a; copying it over v2 would bring a back.
    std::fs::write(bench.trust().join(ROOT_FILE), v1.to_file_text()).unwrap();
    let err = bench.verify(&bench.package("a")).unwrap_err();
    assert!(
        matches!(&err, PackageError::RootRolledBack { found, installed: 2, .. } if found == "version 1"),
        "{err}"
    );
    // A different root with the recorded version is refused too.
    let other_v2 = bench.root(2, 1, &["a"], &["a"]);
    std::fs::write(bench.trust().join(ROOT_FILE), other_v2.to_file_text()).unwrap();
    assert!(matches!(
        bench.verify(&bench.package("a")),
        Err(PackageError::RootRolledBack { installed: 2, .. })
    ));
    // A newer root copied in by hand is accepted only if the recorded root approves it.
    let forged_v3 = bench.root(3, 1, &["a"], &["a"]);
    std::fs::write(bench.trust().join(ROOT_FILE), forged_v3.to_file_text()).unwrap();
    assert!(matches!(
        bench.verify(&bench.package("a")),
        Err(PackageError::RootBelowThreshold {
            by: "the current root",
            ..
        })
    ));
    let real_v3 = bench.root(3, 1, &["c"], &["b", "c"]);
    std::fs::write(bench.trust().join(ROOT_FILE), real_v3.to_file_text()).unwrap();
    bench.verify(&bench.package("c")).unwrap();
}

#[test]
fn an_expired_root_is_refused_with_the_way_to_update_it() {
    let bench = Bench::new();
    let all = |b: &Bench| vec![b.role("all", &["*"], 1, &["a"])];
    let expired = bench.root_full(1, 1, &["a"], &["a"], all(&bench), Duration::ZERO);
    assert!(matches!(
        root::install_first(&bench.trust(), &expired, &bench.state()),
        Err(PackageError::RootExpired { .. })
    ));
    assert!(!bench.trust().join(ROOT_FILE).exists());

    let short = bench.root_full(1, 1, &["a"], &["a"], all(&bench), Duration::from_secs(2));
    root::install_first(&bench.trust(), &short, &bench.state()).unwrap();
    let pkg = bench.package("a");
    bench.verify(&pkg).unwrap();
    std::thread::sleep(Duration::from_millis(2100));
    let err = bench.verify(&pkg).unwrap_err();
    assert!(
        matches!(err, PackageError::RootExpired { version: 1, .. }),
        "{err}"
    );
    let message = err.to_string();
    assert!(message.contains("expired at"), "{message}");
    assert!(message.contains("flashline trust update"), "{message}");

    // The expired root still approves its successor, which brings the station back.
    let v2 = bench.root_full(2, 1, &["a"], &["a"], all(&bench), Duration::from_secs(3600));
    root::update(&bench.trust(), &v2, &bench.state()).unwrap();
    bench.verify(&pkg).unwrap();
}

#[test]
fn a_key_signs_only_for_the_products_of_its_roles() {
    let bench = Bench::new();
    let roles = vec![
        bench.role("phones", &["zte-*-phone"], 1, &["phone-release"]),
        bench.role("modems", &["MF8*"], 1, &["modem-release"]),
    ];
    let v1 = bench.root_full(1, 1, &["root"], &["root"], roles, Duration::from_secs(3600));
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();

    bench
        .verify(&bench.package_for("phone-release", "zte-demo-phone"))
        .unwrap();
    bench
        .verify(&bench.package_for("modem-release", "MF833V"))
        .unwrap();
    // The modem key signing a phone package: a valid signature by a trusted key, but outside
    // its role.
    let err = bench
        .verify(&bench.package_for("modem-release", "zte-demo-phone"))
        .unwrap_err();
    assert!(
        matches!(&err, PackageError::OutsideRole { product, roles } if product == "zte-demo-phone" && roles == "phones"),
        "{err}"
    );
    // A product no role covers.
    let err = bench
        .verify(&bench.package_for("phone-release", "pixel"))
        .unwrap_err();
    assert!(
        matches!(&err, PackageError::OutsideRole { roles, .. } if roles == "none"),
        "{err}"
    );
    // Root keys sign roots, not packages.
    assert!(matches!(
        bench.verify(&bench.package_for("root", "zte-demo-phone")),
        Err(PackageError::UnknownKey(_))
    ));
}

#[test]
fn a_role_threshold_must_be_met_by_distinct_keys() {
    let bench = Bench::new();
    let roles = vec![bench.role("modems", &["MF8*"], 2, &["rel-1", "rel-2", "rel-3"])];
    let v1 = bench.root_full(1, 1, &["root"], &["root"], roles, Duration::from_secs(3600));
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();

    let one = bench.package_for("rel-1", "MF833V");
    let err = bench.verify(&one).unwrap_err();
    assert!(
        matches!(
            &err,
            PackageError::RoleBelowThreshold { role, signed: 1, threshold: 2, .. } if role == "modems"
        ),
        "{err}"
    );
    // Co-signed by a second key of the role: accepted.
    cosign(&one, &bench.key("rel-2").secret_path);
    bench.verify(&one).unwrap();
    // The same key twice never counts twice (refused as a duplicate signature).
    let twice = bench.package_for("rel-3", "MF833V");
    cosign(&twice, &bench.key("rel-3").secret_path);
    assert!(matches!(
        bench.verify(&twice),
        Err(PackageError::DuplicateSignature(_))
    ));
}

/// Adds a signature by the secret key in `key_file` to the package at `path`, as a second
/// release manager would: the signature covers the same manifest bytes.
fn cosign(path: &Path, key_file: &Path) {
    use ed25519_dalek::Signer as _;
    use flashline::package::container::{HEADER_LEN, SIGNATURE_DOMAIN, SIGNATURE_ENTRY_LEN};
    use sha2::Digest as _;

    let text = std::fs::read_to_string(key_file).unwrap();
    let seed: [u8; 32] = hex::decode(text.split_whitespace().nth(1).unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let id = &sha2::Sha256::digest(key.verifying_key().as_bytes())[..8];

    let mut bytes = std::fs::read(path).unwrap();
    let manifest_len = u64::from_le_bytes(bytes[12..20].try_into().unwrap());
    let count = u32::from_le_bytes(bytes[20..24].try_into().unwrap());
    let manifest_end = (HEADER_LEN + manifest_len) as usize;
    let message = [SIGNATURE_DOMAIN, &bytes[HEADER_LEN as usize..manifest_end]].concat();
    let entry = [id, &key.sign(&message).to_bytes()[..]].concat();
    assert_eq!(entry.len() as u64, SIGNATURE_ENTRY_LEN);
    let at = manifest_end + count as usize * SIGNATURE_ENTRY_LEN as usize;
    bytes.splice(at..at, entry);
    bytes[20..24].copy_from_slice(&(count + 1).to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_clock_set_back_is_refused_so_expiry_holds() {
    let bench = Bench::new();
    let v1 = bench.root(1, 1, &["a"], &["a"]);
    root::install_first(&bench.trust(), &v1, &bench.state()).unwrap();
    let pkg = bench.package("a");
    bench.verify(&pkg).unwrap();
    // The station has seen a time a day ahead of the clock now: the clock was set back.
    let state = bench.path("home/trust-state.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert!(json["latest_time"].is_string(), "{json:#}");
    let ahead = std::time::SystemTime::now() + Duration::from_secs(24 * 3600);
    json["latest_time"] = humantime::format_rfc3339_seconds(ahead).to_string().into();
    std::fs::write(&state, json.to_string()).unwrap();
    let err = bench.verify(&pkg).unwrap_err();
    assert!(matches!(err, PackageError::ClockSetBack { .. }), "{err}");
    assert!(err.to_string().contains("set the clock right"), "{err}");
}

#[test]
fn the_cli_delegates_roles_sets_expiry_and_retires_loose_keys() {
    let bench = Bench::new();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_flashline"))
            .args(args)
            .env("FLASHLINE_HOME", bench.path("home"))
            .output()
            .unwrap()
    };
    let k = |name: &str| {
        let key = bench.key(name);
        (
            key.public_path.to_str().unwrap().to_string(),
            key.secret_path.to_str().unwrap().to_string(),
        )
    };
    let (root_pub, root_key) = k("root");
    let (modem_pub, _) = k("modem-rel");
    let home_trust = bench.path("home/trust");
    std::fs::create_dir_all(&home_trust).unwrap();
    std::fs::copy(&modem_pub, home_trust.join("modem-rel.pub")).unwrap();
    let r1 = bench.path("root-1.json");
    let out = run(&[
        "trust",
        "rotate",
        "--key",
        &root_pub,
        "--threshold",
        "1",
        "--role",
        &format!("modems:MF8*,MU3*:1:{modem_pub}"),
        "--expires",
        "30d",
        "--sign",
        &root_key,
        "-o",
        r1.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["trust", "init", r1.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("1 loose .pub files were moved to"),
        "{stdout}"
    );
    assert!(home_trust
        .join(RETIRED_KEYS_DIR)
        .join("modem-rel.pub")
        .is_file());

    let modem_pkg = bench.package_for("modem-rel", "MF833V");
    let out = run(&["verify", modem_pkg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let phone_pkg = bench.package_for("modem-rel", "zte-demo-phone");
    let out = run(&["verify", phone_pkg.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no role of the trust root"), "{stderr}");

    // A malformed role is refused before anything is written.
    let bad = run(&[
        "trust",
        "rotate",
        "--key",
        &root_pub,
        "--threshold",
        "1",
        "--role",
        "modems:MF8*",
        "--sign",
        &root_key,
        "-o",
        bench.path("bad.json").to_str().unwrap(),
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("NAME:PATTERN"));
    assert!(!bench.path("bad.json").exists());
}
