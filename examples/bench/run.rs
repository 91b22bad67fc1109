//! Running the programs under test: virtual phones, flashline, Google's fastboot, openssl.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// Where everything lives for one benchmark run.
pub struct Setup {
    /// The release `flashline` binary.
    pub flashline: PathBuf,
    /// Google's `fastboot`, if installed.
    pub fastboot: Option<PathBuf>,
    /// `openssl`, if installed.
    pub openssl: Option<PathBuf>,
    /// `/usr/bin/time`, for peak RSS.
    pub time: Option<PathBuf>,
    /// Images, packages, keys and flashline's home.
    pub work: PathBuf,
    /// Parent of the virtual phones' folders (a tmpfs when there is one).
    pub phones: PathBuf,
    /// Smaller images and fewer runs.
    pub quick: bool,
    /// Measured runs per program and figure.
    pub runs: usize,
}

impl Setup {
    /// The trusted-keys folder.
    pub fn keys(&self) -> PathBuf {
        self.work.join("keys")
    }

    /// A `flashline` command with its home inside the work folder.
    pub fn flashline(&self) -> Command {
        let mut cmd = Command::new(&self.flashline);
        cmd.env("FLASHLINE_HOME", self.work.join("home"));
        cmd
    }
}

/// Finds `name` on the PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs `cmd` to completion and returns its wall time in seconds and its stdout.
pub fn timed(cmd: &mut Command) -> Result<(f64, String)> {
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((seconds, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Runs `cmd` under `/usr/bin/time` and returns its wall time and peak RSS in bytes.
pub fn timed_rss(setup: &Setup, cmd: &Command) -> Result<(f64, Option<u64>)> {
    let Some(time) = &setup.time else {
        return Ok((timed(&mut clone(cmd))?.0, None));
    };
    let out_file = setup.work.join("rss.txt");
    let mut wrapped = Command::new(time);
    wrapped.arg("-f").arg("%M").arg("-o").arg(&out_file);
    wrapped.arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    let (seconds, _) = timed(&mut wrapped)?;
    let kib: Option<u64> = std::fs::read_to_string(&out_file)?
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok());
    Ok((seconds, kib.map(|k| k * 1024)))
}

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`: its own
/// (`children` false) or that of its children it has waited for (`children` true). The
/// kernel counts both in units of 1/100 s here (`USER_HZ`).
pub fn cpu_seconds(pid: &str, children: bool) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces; the
    // first of them is field 3 of proc(5).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("unreadable /proc stat")?
        .1
        .split_whitespace()
        .collect();
    let field = |n: usize| -> Result<f64> {
        Ok(fields
            .get(n - 3)
            .context("short /proc stat")?
            .parse::<f64>()?)
    };
    let (user, system) = if children { (16, 17) } else { (14, 15) };
    Ok((field(user)? + field(system)?) / 100.0)
}

/// Runs `cmd` like [`timed`], and also returns the CPU seconds it used.
pub fn timed_cpu(cmd: &mut Command) -> Result<(f64, f64, String)> {
    let before = cpu_seconds("self", true)?;
    let (wall, stdout) = timed(cmd)?;
    Ok((wall, cpu_seconds("self", true)? - before, stdout))
}

/// A copy of a command (program, arguments, environment).
fn clone(cmd: &Command) -> Command {
    let mut copy = Command::new(cmd.get_program());
    copy.args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            copy.env(key, value);
        }
    }
    copy
}

/// A `flashline flash` run: wall time, CPU time, and per device the seconds the job spent
/// writing images (from its `image-written` events).
pub struct FlashRun {
    pub wall: f64,
    pub cpu: f64,
    pub flash_seconds: Vec<(String, f64)>,
}

/// The `flashline flash` command for `package` onto `devices`.
pub fn flashline_flash_cmd(setup: &Setup, package: &Path, devices: &[String]) -> Command {
    let mut cmd = setup.flashline();
    cmd.arg("flash").arg(package);
    for d in devices {
        cmd.arg("--device").arg(d);
    }
    cmd.arg("--trust")
        .arg(setup.keys())
        .arg("--json")
        .arg("--allow-older");
    cmd
}

/// Flashes `package` onto `devices` with flashline and reads what it reported.
pub fn flashline_flash(setup: &Setup, package: &Path, devices: &[String]) -> Result<FlashRun> {
    let (wall, cpu, stdout) = timed_cpu(&mut flashline_flash_cmd(setup, package, devices))?;
    Ok(FlashRun {
        wall,
        cpu,
        flash_seconds: parse_events(&stdout, devices)?,
    })
}

/// Sums `image-written` seconds per device and checks every job succeeded.
pub fn parse_events(stdout: &str, devices: &[String]) -> Result<Vec<(String, f64)>> {
    let mut seconds: Vec<(String, f64)> = devices.iter().map(|d| (d.clone(), 0.0)).collect();
    let mut finished = 0;
    for line in stdout.lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("bad event line {line:?}"))?;
        let device = event["device"].as_str().unwrap_or(&devices[0]).to_string();
        match event["event"].as_str() {
            Some("image-written") => {
                let s = event["seconds"].as_f64().unwrap_or(0.0);
                if let Some(slot) = seconds.iter_mut().find(|(d, _)| *d == device) {
                    slot.1 += s;
                }
            }
            Some("finished") => {
                if event["outcome"] != "success" {
                    bail!("flashline job on {device} did not succeed: {event}");
                }
                finished += 1;
            }
            _ => {}
        }
    }
    if finished != devices.len() {
        bail!("{finished} of {} flashline jobs finished", devices.len());
    }
    Ok(seconds)
}

/// The `fastboot flash system IMAGE` command for one device.
pub fn fastboot_flash_cmd(setup: &Setup, device: &str, image: &Path) -> Result<Command> {
    let fastboot = setup
        .fastboot
        .as_ref()
        .context("fastboot is not installed")?;
    let mut cmd = Command::new(fastboot);
    cmd.arg("-s")
        .arg(device)
        .arg("flash")
        .arg("system")
        .arg(image);
    Ok(cmd)
}

/// A virtual phone in its own `flashline sim phone` process; stopped and deleted on drop.
pub struct Phone {
    child: Child,
    dir: PathBuf,
    /// The phone's command log (its debug output), and how much of it was read.
    log: PathBuf,
    log_read: usize,
    /// `tcp:127.0.0.1:PORT`.
    pub address: String,
}

/// How to set a virtual phone up.
pub struct PhoneSpec<'a> {
    pub name: &'a str,
    pub system_size: u64,
    pub max_download: u64,
    /// `--link-rate` and `--latency` values, if shaped.
    pub link: Option<(&'a str, &'a str)>,
    /// More partitions: name and size in bytes.
    pub extra: &'a [(&'a str, u64)],
}

impl Phone {
    /// Starts a phone with partitions `boot` (1 MiB) and `system`.
    pub fn start(setup: &Setup, spec: &PhoneSpec<'_>) -> Result<Self> {
        let dir = setup.phones.join(spec.name);
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("commands.log");
        let mut cmd = setup.flashline();
        // Every command the phone receives, for the bytes each client put on the wire.
        cmd.env("FLASHLINE_LOG", "flashline::sim::phone::bootloader=debug");
        cmd.args(["sim", "phone", "--listen", "127.0.0.1:0", "--dir"])
            .arg(&dir)
            .arg("--serial")
            .arg(format!("BENCH-{}", spec.name))
            .arg("--partition")
            .arg("boot=1M")
            .arg("--partition")
            .arg(format!("system={}", spec.system_size))
            .arg("--max-download-size")
            .arg(spec.max_download.to_string());
        for (name, size) in spec.extra {
            cmd.arg("--partition").arg(format!("{name}={size}"));
        }
        if let Some((rate, latency)) = spec.link {
            cmd.args(["--link-rate", rate, "--latency", latency]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start flashline sim phone")?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let address = line.trim().to_string();
        if !address.starts_with("tcp:") {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the virtual phone did not start (said {line:?})");
        }
        Ok(Phone {
            child,
            dir,
            log,
            log_read: 0,
            address,
        })
    }

    /// Bytes announced by the `download:` commands the phone received since the last call:
    /// what the client put on the wire as image data.
    pub fn downloaded(&mut self) -> Result<u64> {
        let log = std::fs::read_to_string(&self.log)?;
        let new = &log[self.log_read.min(log.len())..];
        self.log_read = log.len();
        let mut total = 0;
        for line in new.lines() {
            if let Some(hex) = line.split("download:").nth(1) {
                let hex = hex.split(|c: char| !c.is_ascii_alphanumeric()).next();
                let hex = hex.unwrap_or("").trim_start_matches("0x");
                total += u64::from_str_radix(hex, 16)
                    .with_context(|| format!("bad download command in {line:?}"))?;
            }
        }
        Ok(total)
    }

    /// The file holding partition `name`.
    pub fn partition(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.img"))
    }

    /// CPU seconds the phone has used so far.
    pub fn cpu(&self) -> Result<f64> {
        cpu_seconds(&self.child.id().to_string(), false)
    }

    /// `HOST:PORT` without the `tcp:` prefix.
    pub fn host_port(&self) -> &str {
        self.address.trim_start_matches("tcp:")
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `len` bytes of fast pseudo-random data (incompressible, never a FILL block).
pub fn write_random(path: &Path, len: u64, seed: u64) -> Result<()> {
    let mut file = std::io::BufWriter::with_capacity(
        1 << 20,
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    let mut state = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in buf.chunks_exact_mut(8) {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            word.copy_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        file.write_all(&buf[..n])?;
        left -= n as u64;
    }
    file.flush()?;
    Ok(())
}

/// Packs `image` (for partition `system`) into a signed package next to it.
pub fn pack(setup: &Setup, image: &Path) -> Result<PathBuf> {
    let dir = image.parent().context("image has no folder")?;
    let file = image.file_name().context("image has no name")?;
    let manifest = dir.join(format!("{}.toml", file.to_string_lossy()));
    std::fs::write(
        &manifest,
        format!(
            "name = \"bench\"\nversion = \"3.0.0\"\nsecurity_version = 7\nmin_battery_percent = 10\n\n\
             [[target]]\nproduct = \"zte-demo-phone\"\n\n\
             [[image]]\npartition = \"system\"\nfile = \"{}\"\n",
            file.to_string_lossy()
        ),
    )?;
    let package = image.with_extension("flpkg");
    let mut cmd = setup.flashline();
    cmd.arg("pack")
        .arg(&manifest)
        .arg("--key")
        .arg(setup.keys().join("bench.key"))
        .arg("-o")
        .arg(&package);
    timed(&mut cmd)?;
    Ok(package)
}

/// SHA-256 of the first `len` bytes of `path`.
pub fn sha256_prefix(path: &Path, len: u64) -> Result<[u8; 32]> {
    let mut hasher = flashline::hashing::HashingReader::new(
        std::fs::File::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .take(len),
    );
    std::io::copy(&mut hasher, &mut std::io::sink())?;
    Ok(hasher.finish())
}

/// The median of `values` (0 for none).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
