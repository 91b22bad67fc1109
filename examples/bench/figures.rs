//! Figures 1 to 7 of the benchmark, each measured side by side in one run.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flashline::device::fastboot::FastbootDriver;
use flashline::device::quirks::Quirks;
use flashline::device::{Driver, ImageSource, SendReader, Target};
use flashline::hashing::HashingReader;
use flashline::transport::tcp::TcpTransport;
use sha2::{Digest, Sha256};

use crate::run::{self, median, Phone, PhoneSpec, Setup};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The shaped link: USB 2.0 high-speed bulk as achieved in practice, and its round trip.
pub const LINK_RATE: &str = "40M";
pub const LINK_BYTES_PER_S: f64 = 40e6;
pub const LINK_LATENCY: &str = "500us";

/// One row of the results table, with the raw numbers behind it.
pub struct Figure {
    pub number: u8,
    pub what: String,
    pub measured: String,
    pub target: String,
    /// `None` when the figure has no pass/fail target or could not be measured.
    pub met: Option<bool>,
    pub details: Vec<String>,
}

fn size_text(bytes: u64) -> String {
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An image, its package, and the sizes they were made with.
pub struct Images {
    pub image: PathBuf,
    pub package: PathBuf,
    pub len: u64,
}

/// Writes a random raw image of `len` bytes and packs it.
pub fn make_images(setup: &Setup, name: &str, len: u64, seed: u64) -> Result<Images> {
    let dir = setup.work.join(name);
    std::fs::create_dir_all(&dir)?;
    let image = dir.join("system.img");
    run::write_random(&image, len, seed)?;
    let package = run::pack(setup, &image)?;
    Ok(Images {
        image,
        package,
        len,
    })
}

/// Flashline and fastboot on the same phone, alternating, after one warm-up run of each
/// (the first write into a fresh partition file pays for allocating its pages). Each run
/// also records the CPU seconds of the client and of the phone, which say whether the
/// machine's cores, not the programs, set the time.
#[derive(Default)]
struct SideBySide {
    flashline_wall: Vec<f64>,
    flashline_flash: Vec<f64>,
    fastboot_wall: Vec<f64>,
    /// Per run: (client CPU s, phone CPU s).
    flashline_cpu: Vec<(f64, f64)>,
    fastboot_cpu: Vec<(f64, f64)>,
}

fn side_by_side(setup: &Setup, phone: &Phone, images: &Images) -> Result<SideBySide> {
    let devices = [phone.address.clone()];
    let mut result = SideBySide::default();
    run::flashline_flash(setup, &images.package, &devices)?;
    if setup.fastboot.is_some() {
        run::timed(&mut run::fastboot_flash_cmd(
            setup,
            &phone.address,
            &images.image,
        )?)?;
    }
    for i in 0..setup.runs {
        let mut flashline = || -> Result<()> {
            let phone_before = phone.cpu()?;
            let r = run::flashline_flash(setup, &images.package, &devices)?;
            result.flashline_wall.push(r.wall);
            result.flashline_flash.push(r.flash_seconds[0].1);
            result
                .flashline_cpu
                .push((r.cpu, phone.cpu()? - phone_before));
            Ok(())
        };
        let mut fastboot = || -> Result<()> {
            if setup.fastboot.is_some() {
                let mut cmd = run::fastboot_flash_cmd(setup, &phone.address, &images.image)?;
                let phone_before = phone.cpu()?;
                let (wall, cpu, _) = run::timed_cpu(&mut cmd)?;
                result.fastboot_wall.push(wall);
                result.fastboot_cpu.push((cpu, phone.cpu()? - phone_before));
            }
            Ok(())
        };
        if i % 2 == 0 {
            flashline()?;
            fastboot()?;
        } else {
            fastboot()?;
            flashline()?;
        }
    }
    Ok(result)
}

/// The CPU lines of a side-by-side comparison: what each run cost the machine, and the
/// shortest wall time flashline could have on this many cores.
fn cpu_profile(r: &SideBySide, fastboot_wall: f64) -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let medians = |runs: &[(f64, f64)]| {
        let (client, phone): (Vec<f64>, Vec<f64>) = runs.iter().copied().unzip();
        (median(&client), median(&phone))
    };
    let (fl, fl_phone) = medians(&r.flashline_cpu);
    let (fb, fb_phone) = medians(&r.fastboot_cpu);
    let floor = (fl + fl_phone) / cores;
    let mut lines = vec![
        format!(
            "CPU seconds per run (medians): flashline {fl:.2} + its phone {fl_phone:.2}; \
             fastboot {fb:.2} + its phone {fb_phone:.2}"
        ),
        format!(
            "flashline's runs need {:.2} s of CPU: on {cores} cores no schedule finishes \
             them in under {floor:.2} s",
            fl + fl_phone
        ),
    ];
    if fastboot_wall > 0.0 {
        lines.push(format!(
            "fastboot's runs keep {:.0} % of the {cores} cores busy; flashline's CPU floor \
             alone is {:.2}× fastboot's wall time",
            100.0 * (fb + fb_phone) / fastboot_wall / cores,
            floor / fastboot_wall
        ));
    }
    lines
}

/// Figures 1 and 2: flashing against Google's fastboot.
pub fn versus_fastboot(
    setup: &Setup,
    number: u8,
    images: &Images,
    max_download: u64,
) -> Result<Figure> {
    let phone = Phone::start(
        setup,
        &PhoneSpec {
            name: &format!("fig{number}"),
            system_size: images.len,
            max_download,
            link: None,
            extra: &[],
        },
    )?;
    let r = side_by_side(setup, &phone, images)?;
    let (fl, flash, fb) = (
        median(&r.flashline_wall),
        median(&r.flashline_flash),
        median(&r.fastboot_wall),
    );
    let split = if images.len > max_download {
        format!(
            ", sparse split at max-download-size {}",
            size_text(max_download)
        )
    } else {
        String::new()
    };
    let what = format!(
        "flash {} raw image{split}: flashline / `fastboot -s tcp:` wall time",
        size_text(images.len)
    );
    let mut details = vec![
        format!("flashline end to end (s): {}", list(&r.flashline_wall)),
        format!(
            "flashline writing the image (s): {}",
            list(&r.flashline_flash)
        ),
        format!("fastboot end to end (s): {}", list(&r.fastboot_wall)),
    ];
    details.extend(cpu_profile(&r, fb));
    if fb == 0.0 {
        details.push("fastboot is not installed: no comparison".into());
        return Ok(Figure {
            number,
            what,
            measured: format!("flashline {fl:.2} s (writing {flash:.2} s)"),
            target: "≤ 1.3".into(),
            met: None,
            details,
        });
    }
    let (end_to_end, flash_only) = (fl / fb, flash / fb);
    details.push(format!(
        "medians: flashline {fl:.3} s end to end, {flash:.3} s writing; fastboot {fb:.3} s"
    ));
    Ok(Figure {
        number,
        what,
        measured: format!(
            "{end_to_end:.2} end to end; {flash_only:.2} writing only \
             ({fl:.2} s / {flash:.2} s vs {fb:.2} s)"
        ),
        target: "≤ 1.3".into(),
        met: Some(end_to_end <= 1.3),
        details,
    })
}

/// Figure 3: payload rate over a link shaped like USB 2.0.
pub fn link_rate(setup: &Setup, images: &Images) -> Result<Figure> {
    let phone = Phone::start(
        setup,
        &PhoneSpec {
            name: "fig3",
            system_size: images.len,
            max_download: images.len,
            link: Some((LINK_RATE, LINK_LATENCY)),
            extra: &[],
        },
    )?;
    let devices = [phone.address.clone()];
    let (mut rates, mut fastboot_rates) = (Vec::new(), Vec::new());
    let (mut walls, mut fastboot_walls) = (Vec::new(), Vec::new());
    // Warm-up: the first write into the fresh partition file allocates its pages.
    run::flashline_flash(setup, &images.package, &devices)?;
    for _ in 0..setup.runs {
        let r = run::flashline_flash(setup, &images.package, &devices)?;
        rates.push(images.len as f64 / r.flash_seconds[0].1 / LINK_BYTES_PER_S);
        walls.push(r.wall);
        if setup.fastboot.is_some() {
            let mut cmd = run::fastboot_flash_cmd(setup, &phone.address, &images.image)?;
            let wall = run::timed(&mut cmd)?.0;
            fastboot_rates.push(images.len as f64 / wall / LINK_BYTES_PER_S);
            fastboot_walls.push(wall);
        }
    }
    let rate = median(&rates);
    let mut details = vec![
        format!("flashline, payload rate / link rate: {}", list(&rates)),
        format!(
            "fastboot (whole process, for reference): {}",
            list(&fastboot_rates)
        ),
    ];
    if !fastboot_walls.is_empty() {
        details.push(format!(
            "end to end over this link, flashline / fastboot: {:.3} ({} s vs {} s)",
            median(&walls) / median(&fastboot_walls),
            list(&walls),
            list(&fastboot_walls)
        ));
    }
    Ok(Figure {
        number: 3,
        what: format!(
            "link shaped to {LINK_RATE}B/s + {LINK_LATENCY} per command: payload rate / link \
             rate ({} image, download + flash)",
            size_text(images.len)
        ),
        measured: format!(
            "{:.1} % ({:.1} MB/s)",
            rate * 100.0,
            rate * LINK_BYTES_PER_S / 1e6
        ),
        target: "≥ 95 %".into(),
        met: Some(rate >= 0.95),
        details,
    })
}

/// Figure 4: package verification against openssl, plus the in-process hash and
/// signature costs.
pub fn verification(setup: &Setup, images: &Images) -> Result<Figure> {
    let len = std::fs::metadata(&images.package)?.len();
    let mut flashline = Vec::new();
    let mut openssl = Vec::new();
    let verify = || {
        let mut cmd = setup.flashline();
        cmd.arg("verify")
            .arg(&images.package)
            .arg("--trust")
            .arg(setup.keys());
        run::timed(&mut cmd).map(|r| r.0)
    };
    let dgst = || -> Result<Option<f64>> {
        let Some(openssl) = &setup.openssl else {
            return Ok(None);
        };
        let mut cmd = std::process::Command::new(openssl);
        cmd.arg("dgst").arg("-sha256").arg(&images.package);
        Ok(Some(run::timed(&mut cmd)?.0))
    };
    // Warm the page cache so both read from memory.
    verify()?;
    for i in 0..setup.runs.max(3) {
        if i % 2 == 0 {
            flashline.push(verify()?);
            openssl.extend(dgst()?);
        } else {
            openssl.extend(dgst()?);
            flashline.push(verify()?);
        }
    }
    let sha_ni = cpu_has_sha();
    let (hash_gbps, hash_len) = sha256_throughput(if setup.quick { 64 * MIB } else { 512 * MIB });
    let ed25519_us = ed25519_verify_micros();
    let fl = median(&flashline);
    let mut details = vec![
        format!("flashline verify (s): {}", list(&flashline)),
        format!("openssl dgst -sha256 (s): {}", list(&openssl)),
        format!(
            "CPU has SHA-NI: {sha_ni}; in-process sha2 over {}: {hash_gbps:.2} GB/s \
             (the software fallback manages about 0.3 GB/s, so SHA-NI is in use)",
            size_text(hash_len)
        ),
        format!("ed25519 verify_strict of a manifest signature: {ed25519_us:.1} µs"),
    ];
    let (measured, met) = match openssl.is_empty() {
        true => (format!("flashline {:.2} GB/s", len as f64 / fl / 1e9), None),
        false => {
            let os = median(&openssl);
            details.push(format!(
                "medians: flashline {fl:.3} s ({:.2} GB/s), openssl {os:.3} s ({:.2} GB/s)",
                len as f64 / fl / 1e9,
                len as f64 / os / 1e9
            ));
            (
                format!(
                    "{:.2} ({:.2} GB/s vs {:.2} GB/s); ed25519 verify {ed25519_us:.0} µs",
                    os / fl,
                    len as f64 / fl / 1e9,
                    len as f64 / os / 1e9
                ),
                Some(os / fl >= 1.0),
            )
        }
    };
    Ok(Figure {
        number: 4,
        what: format!(
            "`flashline verify` throughput / `openssl dgst -sha256` on the same {} package",
            size_text(images.len)
        ),
        measured,
        target: "≥ 1.0".into(),
        met,
        details,
    })
}

fn cpu_has_sha() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sha")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// SHA-256 throughput in GB/s over `len` bytes in 1 MiB updates, as flashline hashes.
fn sha256_throughput(len: u64) -> (f64, u64) {
    let buf = vec![0x5au8; MIB as usize];
    let mut hasher = Sha256::new();
    let started = Instant::now();
    for _ in 0..len / MIB {
        hasher.update(&buf);
    }
    std::hint::black_box(hasher.finalize());
    (len as f64 / started.elapsed().as_secs_f64() / 1e9, len)
}

/// Microseconds per `verify_strict` of one signature over a 4 KiB manifest.
fn ed25519_verify_micros() -> f64 {
    use ed25519_dalek::{Signer, SigningKey};
    let key = SigningKey::from_bytes(&[7u8; 32]);
    let message = vec![0x42u8; 4096];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    let rounds = 2000;
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(public.verify_strict(&message, &signature).is_ok());
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(rounds)
}

/// An image file read by the driver, hashed on the way (as a package image is) or not.
struct FileImage<'a> {
    path: &'a Path,
    len: u64,
    expected: Option<[u8; 32]>,
}

struct Plain(File);

impl Read for Plain {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl SendReader for Plain {
    fn verify(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

struct Hashed {
    reader: HashingReader<File>,
    expected: [u8; 32],
}

impl Read for Hashed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl SendReader for Hashed {
    fn verify(self: Box<Self>) -> Result<(), String> {
        (self.reader.finish() == self.expected)
            .then_some(())
            .ok_or_else(|| "hash mismatch".into())
    }
}

impl ImageSource for FileImage<'_> {
    fn len(&self) -> u64 {
        self.len
    }
    fn is_sparse(&self) -> bool {
        false
    }
    fn plan_reader(&self) -> std::io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(File::open(self.path)?))
    }
    fn send_reader(&self) -> std::io::Result<Box<dyn SendReader + '_>> {
        let file = File::open(self.path)?;
        Ok(match self.expected {
            Some(expected) => Box::new(Hashed {
                reader: HashingReader::new(file),
                expected,
            }),
            None => Box::new(Plain(file)),
        })
    }
}

/// Seconds for the fastboot driver to write `image` to the phone's `system`.
fn driver_write(phone: &Phone, image: &FileImage<'_>) -> Result<f64> {
    let transport = TcpTransport::connect(phone.host_port(), Duration::from_secs(5))?;
    let mut driver = FastbootDriver::new(transport, Quirks::builtin(), true);
    let started = Instant::now();
    driver.write_image(
        &Target::Partition {
            name: "system".into(),
        },
        image,
        &mut |_| {},
    )?;
    Ok(started.elapsed().as_secs_f64())
}

/// Figure 5: the driver with and without streaming verification, on loopback and on a
/// shaped link.
pub fn verification_overhead(setup: &Setup, images: &Images, shaped: &Images) -> Result<Figure> {
    let expected = |path: &Path| -> Result<[u8; 32]> {
        let mut hasher = HashingReader::new(File::open(path)?);
        std::io::copy(&mut hasher, &mut std::io::sink())?;
        Ok(hasher.finish())
    };
    let mut details = Vec::new();
    let mut overheads = Vec::new();
    for (label, imgs, link) in [
        ("loopback", images, None),
        ("40 MB/s link", shaped, Some((LINK_RATE, LINK_LATENCY))),
    ] {
        let phone = Phone::start(
            setup,
            &PhoneSpec {
                name: "fig5",
                system_size: imgs.len,
                max_download: imgs.len,
                link,
                extra: &[],
            },
        )?;
        let hashed = FileImage {
            path: &imgs.image,
            len: imgs.len,
            expected: Some(expected(&imgs.image)?),
        };
        let plain = FileImage {
            expected: None,
            ..hashed
        };
        driver_write(&phone, &plain).context("warm-up write")?;
        let (mut with, mut without) = (Vec::new(), Vec::new());
        let runs = if link.is_some() {
            setup.runs.min(2)
        } else {
            setup.runs.max(3)
        };
        for i in 0..runs {
            if i % 2 == 0 {
                with.push(driver_write(&phone, &hashed)?);
                without.push(driver_write(&phone, &plain)?);
            } else {
                without.push(driver_write(&phone, &plain)?);
                with.push(driver_write(&phone, &hashed)?);
            }
        }
        let overhead = median(&with) / median(&without) - 1.0;
        overheads.push((label, overhead));
        details.push(format!(
            "{label}, {}: hashing {} s; not hashing {} s; overhead {:+.1} %",
            size_text(imgs.len),
            list(&with),
            list(&without),
            overhead * 100.0
        ));
    }
    Ok(Figure {
        number: 5,
        what: "streaming verification overhead: driver writing with vs without hashing".into(),
        measured: overheads
            .iter()
            .map(|(label, o)| format!("{:+.1} % ({label})", o * 100.0))
            .collect::<Vec<_>>()
            .join(", "),
        target: "within noise".into(),
        met: overheads.last().map(|(_, o)| o.abs() < 0.03),
        details,
    })
}

/// Figure 6: peak RSS of flashline flashing a large image (and fastboot's, for
/// reference), and whether each stored the whole image.
pub fn peak_rss(setup: &Setup, images: &Images, max_download: u64) -> Result<Figure> {
    let phone = Phone::start(
        setup,
        &PhoneSpec {
            name: "fig6",
            system_size: images.len,
            max_download,
            link: None,
            extra: &[],
        },
    )?;
    let signed = run::sha256_prefix(&images.image, images.len)?;
    let stored = || -> Result<&str> {
        Ok(
            match run::sha256_prefix(&phone.partition("system"), images.len)? == signed {
                true => "the phone holds the whole image",
                false => "THE PHONE DOES NOT HOLD THE IMAGE",
            },
        )
    };
    let mut details = Vec::new();
    // fastboot first, onto the still empty partition, so that its result is its own.
    if setup.fastboot.is_some() {
        let cmd = run::fastboot_flash_cmd(setup, &phone.address, &images.image)?;
        let (fb_seconds, fb_rss) = run::timed_rss(setup, &cmd)?;
        details.push(format!(
            "fastboot: {fb_seconds:.2} s, peak RSS {}; {}",
            rss_text(fb_rss),
            stored()?
        ));
    }
    let cmd =
        run::flashline_flash_cmd(setup, &images.package, std::slice::from_ref(&phone.address));
    let (fl_seconds, fl_rss) = run::timed_rss(setup, &cmd)?;
    details.insert(
        0,
        format!(
            "flashline: {fl_seconds:.2} s (the first write into the fresh partition file), \
             peak RSS {}; {}",
            rss_text(fl_rss),
            stored()?
        ),
    );
    Ok(Figure {
        number: 6,
        what: format!(
            "peak RSS flashing a {} image (max-download-size {})",
            size_text(images.len),
            size_text(max_download)
        ),
        measured: rss_text(fl_rss),
        target: "≤ 64 MiB".into(),
        met: fl_rss.map(|r| r <= 64 * MIB),
        details,
    })
}

fn rss_text(rss: Option<u64>) -> String {
    rss.map_or("n/a (no /usr/bin/time)".into(), |r| {
        format!("{:.1} MiB", r as f64 / MIB as f64)
    })
}

/// Figure 7: eight phones behind their own shaped links, flashed by one process.
pub fn many_devices(setup: &Setup, images: &Images) -> Result<Figure> {
    let phones = (0..8)
        .map(|i| {
            Phone::start(
                setup,
                &PhoneSpec {
                    name: &format!("fig7-{i}"),
                    system_size: images.len,
                    max_download: images.len,
                    link: Some((LINK_RATE, LINK_LATENCY)),
                    extra: &[],
                },
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let all: Vec<String> = phones.iter().map(|p| p.address.clone()).collect();
    let one = [all[0].clone()];
    run::flashline_flash(setup, &images.package, &all).context("warm-up")?;
    let (mut alone, mut together, mut spreads) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..setup.runs.min(2) {
        let mut run_alone = || -> Result<()> {
            alone.push(run::flashline_flash(setup, &images.package, &one)?.wall);
            Ok(())
        };
        let mut run_together = || -> Result<()> {
            let r = run::flashline_flash(setup, &images.package, &all)?;
            let times: Vec<f64> = r.flash_seconds.iter().map(|(_, s)| *s).collect();
            let slowest = times.iter().copied().fold(0.0, f64::max);
            let fastest = times.iter().copied().fold(f64::INFINITY, f64::min);
            spreads.push(slowest / fastest);
            together.push(r.wall);
            Ok(())
        };
        if i % 2 == 0 {
            run_alone()?;
            run_together()?;
        } else {
            run_together()?;
            run_alone()?;
        }
    }
    let ratio = median(&together) / median(&alone);
    let spread = spreads.iter().copied().fold(0.0, f64::max);
    Ok(Figure {
        number: 7,
        what: format!(
            "8 phones, each behind its own {LINK_RATE}B/s link, flashed at once by one process \
             ({} each): total / one alone; slowest / fastest device",
            size_text(images.len)
        ),
        measured: format!("{ratio:.2}×; slowest / fastest {spread:.2}"),
        target: "≤ 1.2×; ≤ 1.2".into(),
        met: Some(ratio <= 1.2 && spread <= 1.2),
        details: vec![
            format!("one alone (s): {}", list(&alone)),
            format!("eight at once (s): {}", list(&together)),
            format!("slowest / fastest per run: {}", list(&spreads)),
        ],
    })
}
