//! The signed trust root: a chain of roots, each approved by a threshold of distinct keys
//! of the one before, never going back, never holding the demo key; and a key rotated out
//! stops being trusted for packages.

use std::path::{Path, PathBuf};
use std::process::Command;

use flashline::package::root::{self, ROOT_FILE};
use flashline::package::{
    generate_key, pack, GeneratedKey, Origin, Package, PackageError, PublicKey, RootDocument,
    RootKey, SignedRoot, TrustStore,
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

    /// A root of `version` trusting `keys` with `threshold`, signed by `signers`.
    fn root(&self, version: u64, threshold: u32, keys: &[&str], signers: &[&str]) -> SignedRoot {
        let document = RootDocument {
            version,
            threshold,
            keys: keys
                .iter()
                .map(|k| RootKey::of(&PublicKey::load(&self.key(k).public_path).unwrap()))
                .collect(),
        };
        let signers: Vec<PathBuf> = signers.iter().map(|s| self.key(s).secret_path).collect();
        SignedRoot::sign(document, &signers).unwrap()
    }

    /// A one-image package signed by `key`.
    fn package(&self, key: &str) -> PathBuf {
        let src = self.path(&format!("src-{key}"));
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("boot.img"), vec![0x5a; 4096]).unwrap();
        std::fs::write(
            src.join("manifest.toml"),
            "name = \"p\"\nversion = \"1.0.0\"\nsecurity_version = 1\nmin_battery_percent = 0\n\
             [[target]]\nproduct = \"zte-demo-phone\"\n\
             [[image]]\npartition = \"boot\"\nfile = \"boot.img\"\n",
        )
        .unwrap();
        let out = self.path(&format!("{key}.flpkg"));
        pack(&src.join("manifest.toml"), &self.key(key).secret_path, &out).unwrap();
        out
    }

    fn verify(&self, package: &Path) -> Result<(), PackageError> {
        let trust = TrustStore::load_dir(&self.trust(), Origin::Default)?;
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
    root::install_first(&bench.trust(), &v1).unwrap();
    // 2-of-3 of v1 approve; 2-of-2 of v2 sign themselves.
    let v2 = bench.root(2, 2, &["b", "c", "d"], &["a", "c", "b", "d"]);
    assert_eq!(root::update(&bench.trust(), &v2).unwrap(), 1);
    let v3 = bench.root(3, 1, &["d", "e"], &["c", "d", "e"]);
    assert_eq!(root::update(&bench.trust(), &v3).unwrap(), 2);

    let installed = root::installed(&bench.trust()).unwrap().unwrap();
    assert_eq!(installed.version(), 3);
    let trust = TrustStore::load_dir(&bench.trust(), Origin::Default).unwrap();
    let mut ids: Vec<_> = trust.keys().map(|k| k.id()).collect();
    let mut want = vec![bench.key("d").key_id, bench.key("e").key_id];
    ids.sort();
    want.sort();
    assert_eq!(ids, want);
    assert!(bench.path("trust").join(ROOT_FILE).is_file());
    // A station may also skip a version: 3 → 5 signed by 3's keys.
    let v5 = bench.root(5, 1, &["e"], &["d", "e"]);
    assert_eq!(root::update(&bench.trust(), &v5).unwrap(), 3);
}

#[test]
fn below_the_old_threshold_is_refused() {
    let bench = Bench::new();
    let v1 = bench.root(1, 2, &["a", "b", "c"], &["a", "b", "c"]);
    root::install_first(&bench.trust(), &v1).unwrap();
    let v2 = bench.root(2, 1, &["d"], &["a", "d"]);
    let err = root::update(&bench.trust(), &v2).unwrap_err();
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
    root::install_first(&bench.trust(), &v1).unwrap();
    // Approved by the old root, but only 1 of the 2 new keys it needs signed it.
    let v2 = bench.root(2, 2, &["b", "c"], &["a", "b"]);
    let err = root::update(&bench.trust(), &v2).unwrap_err();
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
        root::install_first(&fresh, &unusable),
        Err(PackageError::RootBelowThreshold { .. })
    ));
    assert!(!fresh.join(ROOT_FILE).exists());
}

#[test]
fn the_same_key_signing_twice_counts_once() {
    let bench = Bench::new();
    let v1 = bench.root(1, 2, &["a", "b"], &["a", "b"]);
    root::install_first(&bench.trust(), &v1).unwrap();
    let v2 = bench.root(2, 1, &["a", "b"], &["a"]);
    let doubled = edited(&v2, |json| {
        let signatures = json["signatures"].as_array_mut().unwrap();
        let first = signatures[0].clone();
        signatures.push(first.clone());
        signatures.push(first);
    });
    assert_eq!(doubled.signature_key_ids().count(), 3);
    let err = root::update(&bench.trust(), &doubled).unwrap_err();
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
    root::install_first(&bench.trust(), &v1).unwrap();
    let v2 = bench.root(2, 1, &["a"], &["a"]);
    root::update(&bench.trust(), &v2).unwrap();
    for (old, version) in [(&v1, 1), (&v2, 2)] {
        let err = root::update(&bench.trust(), old).unwrap_err();
        assert!(
            matches!(err, PackageError::RootRollback { current: 2, offered } if offered == version),
            "{err}"
        );
    }
    // Installing a "first" root over an existing one is refused too.
    assert!(matches!(
        root::install_first(&bench.trust(), &v1),
        Err(PackageError::RootAlreadyInstalled(_))
    ));
}

#[test]
fn signatures_by_unknown_keys_count_for_nothing() {
    let bench = Bench::new();
    let v1 = bench.root(1, 1, &["a"], &["a"]);
    root::install_first(&bench.trust(), &v1).unwrap();
    let v2 = bench.root(2, 1, &["x"], &["x", "y", "z"]);
    let err = root::update(&bench.trust(), &v2).unwrap_err();
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
        threshold: 1,
        keys: vec![RootKey::of(&demo)],
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
    root::install_first(&bench.trust(), &v1).unwrap();
    std::fs::write(bench.trust().join(ROOT_FILE), json.to_string()).unwrap();
    assert!(matches!(
        TrustStore::load_dir(&bench.trust(), Origin::Explicit),
        Err(PackageError::RootContainsDemoKey)
    ));
}

#[test]
fn a_tampered_root_is_refused() {
    let bench = Bench::new();
    let v1 = bench.root(1, 1, &["a", "b"], &["a"]);
    root::install_first(&bench.trust(), &v1).unwrap();
    let v2 = bench.root(2, 1, &["a", "b"], &["a", "b"]);
    let tampered = edited(&v2, |json| {
        json["signed"]["keys"][1]["name"] = "mallory".into()
    });
    let err = root::update(&bench.trust(), &tampered).unwrap_err();
    assert!(matches!(err, PackageError::RootBadSignature(_)), "{err}");
    let raised = edited(&v2, |json| json["signed"]["version"] = 9.into());
    assert!(matches!(
        root::update(&bench.trust(), &raised),
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
        TrustStore::load_dir(&bench.trust(), Origin::Default),
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
    root::install_first(&bench.trust(), &v1).unwrap();
    bench.verify(&by_a).unwrap();
    bench.verify(&by_b).unwrap();

    let v2 = bench.root(2, 1, &["b"], &["a", "b"]);
    root::update(&bench.trust(), &v2).unwrap();
    // a.pub still lies in the folder, but the root decides.
    assert!(bench.trust().join("a.pub").exists());
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
