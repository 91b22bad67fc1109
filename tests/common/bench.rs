//! A scratch bench for end-to-end tests that drive the real `flashline` binary: keys, a
//! home folder, packages made with `flashline pack`, and virtual phones.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use flashline::sim::phone::{PhoneConfig, PhoneSim, RunningPhone};
use sha2::{Digest, Sha256};

/// A scratch bench: keys, a home folder for flashline, a package folder.
pub struct Bench {
    pub dir: tempfile::TempDir,
}

impl Bench {
    pub fn new() -> Self {
        let bench = Bench {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = bench.run(&[
            "key",
            "gen",
            "--name",
            "release",
            "--out",
            bench.path("keys").to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bench
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flashline"))
            .args(args)
            .env("FLASHLINE_HOME", self.path("home"))
            .output()
            .unwrap()
    }

    /// Writes the images and a manifest, packs them, returns the package path.
    pub fn pack(
        &self,
        name: &str,
        version: &str,
        security: u64,
        product: &str,
        images: &[(&str, &[u8])],
    ) -> PathBuf {
        let dir = self.path(&format!("src-{name}-{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut manifest = format!(
            "name = \"{name}\"\nversion = \"{version}\"\nsecurity_version = {security}\nmin_battery_percent = 30\n[[target]]\nproduct = \"{product}\"\n"
        );
        for (partition, bytes) in images {
            std::fs::write(dir.join(format!("{partition}.img")), bytes).unwrap();
            manifest.push_str(&format!(
                "[[image]]\npartition = \"{partition}\"\nfile = \"{partition}.img\"\n"
            ));
        }
        std::fs::write(dir.join("manifest.toml"), manifest).unwrap();
        self.pack_manifest(&dir, &format!("{name}-{version}"))
    }

    /// Packs `src/manifest.toml` with the release key into `NAME.flpkg`.
    pub fn pack_manifest(&self, src: &Path, name: &str) -> PathBuf {
        let pkg = self.path(&format!("{name}.flpkg"));
        let out = self.run(&[
            "pack",
            src.join("manifest.toml").to_str().unwrap(),
            "--key",
            self.path("keys/release.key").to_str().unwrap(),
            "-o",
            pkg.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "pack failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pkg
    }

    /// `flashline flash` of `pkg` onto a virtual phone, with JSON events and a report.
    pub fn flash(
        &self,
        pkg: &Path,
        phone: &RunningPhone,
        extra: &[&str],
    ) -> (Output, serde_json::Value) {
        self.job("flash", pkg, Some(&phone.device_address()), extra)
    }

    /// Runs a job command (`flash`, `recover`) on `pkg` trusting the release key, and
    /// returns its output and the report it always writes.
    pub fn job(
        &self,
        command: &str,
        pkg: &Path,
        device: Option<&str>,
        extra: &[&str],
    ) -> (Output, serde_json::Value) {
        let report = self.path("report.json");
        let _ = std::fs::remove_file(&report);
        let keys = self.path("keys");
        let mut args = vec![
            command,
            pkg.to_str().unwrap(),
            "--trust",
            keys.to_str().unwrap(),
            "--report",
            report.to_str().unwrap(),
            "--json",
        ];
        if let Some(device) = device {
            args.extend(["--device", device]);
        }
        args.extend(extra);
        let out = self.run(&args);
        let report = std::fs::read(&report).unwrap_or_else(|_| {
            panic!(
                "no report; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out, serde_json::from_slice(&report).unwrap())
    }

    pub fn phone(&self, cfg: PhoneConfig) -> (RunningPhone, PathBuf) {
        let dir = self.path("phone");
        let phone = PhoneSim::start("127.0.0.1:0".parse().unwrap(), &dir, cfg).unwrap();
        (phone, dir)
    }
}

/// Deterministic test data: random-looking bytes, then zeros, then a fill pattern.
pub fn image(random: usize, zeros: usize, fill: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ (random + zeros + fill) as u64;
    let mut out = Vec::with_capacity(random + zeros + fill);
    while out.len() < random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(random);
    out.resize(random + zeros, 0);
    out.extend(std::iter::repeat_n([0xA5u8, 0x5A, 0x01, 0x02], fill / 4).flatten());
    out
}

pub fn assert_prefix(partition: &Path, expected: &[u8]) {
    let stored = std::fs::read(partition).unwrap();
    assert!(
        stored.len() >= expected.len(),
        "{} is smaller than the image",
        partition.display()
    );
    assert!(
        stored[..expected.len()] == *expected,
        "{} does not hold the image",
        partition.display()
    );
}

pub fn hashes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "img"))
        .map(|p| {
            (
                p.display().to_string(),
                Sha256::digest(std::fs::read(&p).unwrap()).to_vec(),
            )
        })
        .collect();
    out.sort();
    out
}

pub fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event: {l}: {e}")))
        .collect()
}
