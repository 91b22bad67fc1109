//! Figures 8 and 9 (issue 16): a realistic image set against Google's fastboot over a link
//! shaped like USB 2.0, and an EDL re-flash of a build that differs in 10 % of its blocks
//! against a full write.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use flashline::sim::edl::{build_test_programmer, EdlConfig, EdlSim, PartSpec};
use sha2::{Digest, Sha256};

use crate::figures::{Figure, LINK_LATENCY, LINK_RATE};
use crate::run::{self, median, Phone, PhoneSpec, Setup};

const MIB: u64 = 1 << 20;

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.3}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd`, failing with its stderr if it fails.
fn checked(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// The realistic image set: what each image is, its partition and file.
struct ImageSet {
    images: Vec<(&'static str, PathBuf, u64)>,
    package: PathBuf,
    notes: Vec<String>,
}

/// A directory tree like a system partition's: many small files (text and binaries) and
/// a few large ones, `data` bytes of random content in all.
fn system_tree(dir: &Path, data: u64) -> Result<()> {
    let mut seed = 11u64;
    let mut left = data;
    let mut n = 0u32;
    while left > 0 {
        let sub = dir.join(format!("d{}", n % 40));
        std::fs::create_dir_all(&sub)?;
        let len = match n % 10 {
            0 => 8 * MIB,
            1..=3 => 256 * 1024,
            _ => 16 * 1024,
        }
        .min(left);
        if n.is_multiple_of(3) {
            let line = format!("config line {n}\n");
            let text = line.repeat(len as usize / line.len() + 1);
            std::fs::write(
                sub.join(format!("f{n}.conf")),
                &text.as_bytes()[..len as usize],
            )?;
        } else {
            run::write_random(&sub.join(format!("f{n}.so")), len, seed)?;
        }
        seed += 1;
        left -= len;
        n += 1;
    }
    Ok(())
}

/// Builds the set with Debian's own tools and packs it: an ext4 system image
/// (`mkfs.ext4 -d`, with free space), an erofs vendor image (`mkfs.erofs`, if
/// erofs-utils is installed), a random boot image and a small vbmeta-like image.
fn image_set(setup: &Setup) -> Result<ImageSet> {
    let dir = setup.work.join("realistic");
    let tree = dir.join("tree");
    std::fs::create_dir_all(&tree)?;
    let (ext4_len, data, boot_len) = if setup.quick {
        (64 * MIB, 24 * MIB, 8 * MIB)
    } else {
        (1024 * MIB, 360 * MIB, 64 * MIB)
    };
    system_tree(&tree, data)?;
    let mut images = Vec::new();
    let mut notes = Vec::new();
    let ext4 = dir.join("system.ext4");
    checked(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-b", "4096", "-d"])
            .arg(&tree)
            .arg(&ext4)
            .arg(format!("{}M", ext4_len / MIB)),
    )?;
    images.push(("system", ext4.clone(), ext4_len));
    match run::which("mkfs.erofs") {
        Some(mkfs) => {
            let erofs = dir.join("vendor.erofs");
            // No `-q`: erofs-utils 1.5 (Debian 12) has no quiet option.
            checked(Command::new(mkfs).arg(&erofs).arg(&tree))?;
            let len = std::fs::metadata(&erofs)?.len().next_multiple_of(4096);
            images.push(("vendor", erofs, len));
        }
        None => notes.push(
            "erofs-utils is not installed: no erofs image in the set \
             (`apt-get install erofs-utils`)"
                .into(),
        ),
    }
    let boot = dir.join("kernel.img");
    run::write_random(&boot, boot_len, 64)?;
    images.push(("kernel", boot, boot_len));
    let vbmeta = dir.join("vbmeta.img");
    run::write_random(&vbmeta, 64 * 1024, 65)?;
    images.push(("vbmeta", vbmeta, 64 * 1024));

    let mut manifest = String::from(
        "name = \"bench\"\nversion = \"3.0.0\"\nsecurity_version = 7\nmin_battery_percent = 10\n\n\
         [[target]]\nproduct = \"zte-demo-phone\"\n",
    );
    for (partition, path, _) in &images {
        manifest.push_str(&format!(
            "\n[[image]]\npartition = \"{partition}\"\nfile = \"{}\"\n",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    let manifest_path = dir.join("set.toml");
    std::fs::write(&manifest_path, manifest)?;
    let package = dir.join("set.flpkg");
    let mut cmd = setup.flashline();
    cmd.arg("pack")
        .arg(&manifest_path)
        .arg("--key")
        .arg(setup.keys().join("bench.key"))
        .arg("-o")
        .arg(&package);
    run::timed(&mut cmd)?;
    notes.push(format!(
        "images: {}; package {} bytes",
        images
            .iter()
            .map(|(p, _, len)| format!("{p} {} MiB", len / MIB))
            .collect::<Vec<_>>()
            .join(", "),
        std::fs::metadata(&package)?.len()
    ));
    Ok(ImageSet {
        images,
        package,
        notes,
    })
}

/// Figure 8: the realistic set over the shaped link, flashline / `fastboot`, at
/// `max-download-size` 256 MiB and 1 GiB.
pub fn realistic_set(setup: &Setup) -> Result<Figure> {
    let set = image_set(setup)?;
    let mut details = set.notes.clone();
    let mut ratios = Vec::new();
    let limits: &[u64] = if setup.quick {
        &[16 * MIB, 64 * MIB]
    } else {
        &[256 * MIB, 1024 * MIB]
    };
    let system = set.images[0].2;
    let extra: Vec<(&str, u64)> = set.images[1..]
        .iter()
        .map(|(p, _, len)| (*p, *len))
        .collect();
    for &limit in limits {
        let mut phone = Phone::start(
            setup,
            &PhoneSpec {
                name: &format!("fig8-{}", limit / MIB),
                system_size: system,
                max_download: limit,
                link: Some((LINK_RATE, LINK_LATENCY)),
                extra: &extra,
            },
        )?;
        let devices = [phone.address.clone()];
        let fastboot = |phone: &Phone| -> Result<Option<f64>> {
            let Some(fastboot) = &setup.fastboot else {
                return Ok(None);
            };
            let mut cmd = Command::new(fastboot);
            cmd.arg("-s").arg(&phone.address);
            for (partition, path, _) in &set.images {
                cmd.arg("flash").arg(partition).arg(path);
            }
            Ok(Some(run::timed(&mut cmd)?.0))
        };
        // Warm-up of each, then alternating. The phone's command log says how many image
        // bytes each client put on the wire (the same for every run of one client).
        run::flashline_flash(setup, &set.package, &devices)?;
        let fl_wire = phone.downloaded()?;
        fastboot(&phone)?;
        let fb_wire = phone.downloaded()?;
        let (mut fl, mut fb) = (Vec::new(), Vec::new());
        for i in 0..setup.runs {
            let mut flashline = || -> Result<()> {
                fl.push(run::flashline_flash(setup, &set.package, &devices)?.wall);
                Ok(())
            };
            if i % 2 == 0 {
                flashline()?;
                fb.extend(fastboot(&phone)?);
            } else {
                fb.extend(fastboot(&phone)?);
                flashline()?;
            }
        }
        let (fl_m, fb_m) = (median(&fl), median(&fb));
        let link = flashline::sim::phone::parse_rate(LINK_RATE).map_err(anyhow::Error::msg)?;
        details.push(format!(
            "max-download-size {} MiB: flashline (s): {}; fastboot (s): {}",
            limit / MIB,
            list(&fl),
            list(&fb)
        ));
        details.push(format!(
            "max-download-size {} MiB, on the wire: flashline {:.1} MiB ({:.2} s of link \
             time alone), fastboot {:.1} MiB ({:.2} s)",
            limit / MIB,
            fl_wire as f64 / MIB as f64,
            fl_wire as f64 / link as f64,
            fb_wire as f64 / MIB as f64,
            fb_wire as f64 / link as f64,
        ));
        if fb_m > 0.0 {
            ratios.push((limit, fl_m / fb_m, fl_m, fb_m));
        }
    }
    let what = "realistic image set (ext4 from `mkfs.ext4 -d`, erofs, random boot, vbmeta) \
                over the shaped link: flashline / `fastboot` wall time"
        .to_string();
    if ratios.is_empty() {
        details.push("fastboot is not installed: no comparison".into());
        return Ok(Figure {
            number: 8,
            what,
            measured: "n/a".into(),
            target: "≤ 0.8".into(),
            met: None,
            details,
        });
    }
    let measured = ratios
        .iter()
        .map(|(limit, r, fl, fb)| format!("{r:.2} at {} MiB ({fl:.2} s vs {fb:.2} s)", limit / MIB))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Figure {
        number: 8,
        what,
        measured,
        target: "≤ 0.8".into(),
        met: Some(ratios.iter().all(|r| r.1 <= 0.8)),
        details,
    })
}

/// Writes a flat build of one raw image for LUN 0 sector `start` of the bench's EDL device.
fn flat_build(
    dir: &Path,
    programmer: &[u8],
    image: &[u8],
    start: u64,
    version: &str,
) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("prog_firehose_ddr.elf"), programmer)?;
    std::fs::write(dir.join("system.bin"), image)?;
    let sectors = (image.len() as u64).div_ceil(512);
    std::fs::write(
        dir.join("rawprogram0.xml"),
        format!(
            "<?xml version=\"1.0\" ?>\n<data>\n  <program SECTOR_SIZE_IN_BYTES=\"512\" \
             file_sector_offset=\"0\" filename=\"system.bin\" label=\"system\" \
             num_partition_sectors=\"{sectors}\" physical_partition_number=\"0\" \
             start_sector=\"{start}\" />\n</data>\n"
        ),
    )?;
    std::fs::write(
        dir.join("manifest.toml"),
        format!(
            "name = \"bench-edl\"\nversion = \"{version}\"\nsecurity_version = 1\n\
             min_battery_percent = 0\n[[target]]\nproduct = \"MF833V\"\n[qualcomm]\n\
             programmer = \"prog_firehose_ddr.elf\"\nrawprogram = [\"rawprogram0.xml\"]\n\
             memory = \"emmc\"\n"
        ),
    )?;
    Ok(())
}

/// Figure 9: an EDL re-flash of a build that differs from what the device holds in 10 %
/// of its blocks, against a full write of the same build, on the same virtual device
/// behind the shaped link (40 MB/s, 0.5 ms per round trip).
pub fn edl_reflash(setup: &Setup) -> Result<Figure> {
    let len = if setup.quick { 32 * MIB } else { 256 * MIB };
    let dir = setup.work.join("edl");
    std::fs::create_dir_all(&dir)?;
    let programmer = build_test_programmer(&[7u8; 20_000]);
    let cfg = EdlConfig {
        luns: vec![len / 512 + 8192],
        partitions: vec![PartSpec::new(0, "system", len / 512)],
        identity_labels: Vec::new(),
        programmer_sha256: Some(Sha256::digest(&programmer).into()),
        link_rate: Some(flashline::sim::phone::parse_rate(LINK_RATE).map_err(anyhow::Error::msg)?),
        latency: humantime::parse_duration(LINK_LATENCY)?,
        ..EdlConfig::default()
    };
    let device = dir.join("device");
    // The device's layout decides where the build writes.
    drop(EdlSim::new(&device, cfg.clone(), None)?);
    let lun_path = flashline::sim::edl::lun_path(&device, 0);
    let lun = std::fs::read(&lun_path)?;
    let gpt = flashline::protocol::gpt::Gpt::parse(512, &lun[..34 * 512])?;
    let start = gpt
        .partitions
        .iter()
        .find(|p| p.label == "system")
        .context("no system partition")?
        .first_lba;
    drop(lun);

    let old = dir.join("old.bin");
    run::write_random(&old, len, 90)?;
    let old = std::fs::read(&old)?;
    let mut new = old.clone();
    // Every tenth 1 MiB block differs.
    for block in (0..len / MIB).step_by(10) {
        let at = (block * MIB) as usize;
        for b in &mut new[at..at + 4096] {
            *b ^= 0xa5;
        }
    }
    let src = dir.join("build");
    flat_build(&src, &programmer, &new, start, "2.0.0")?;
    let mut cmd = setup.flashline();
    let package = dir.join("build.flpkg");
    cmd.arg("pack")
        .arg(src.join("manifest.toml"))
        .arg("--key")
        .arg(setup.keys().join("bench.key"))
        .arg("-o")
        .arg(&package);
    run::timed(&mut cmd)?;

    let sim = EdlSim::start(&device, cfg, Some(&setup.work.join("home/bench")))?;
    let at = start * 512;
    let set_lun = |content: &[u8]| -> Result<()> {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new().write(true).open(&lun_path)?;
        file.write_all_at(content, at)?;
        Ok(())
    };
    let zeros = vec![0u8; len as usize];
    let report = dir.join("report.json");
    let recover = |held: &[u8]| -> Result<(f64, serde_json::Value)> {
        set_lun(held)?;
        let mut cmd = setup.flashline();
        cmd.arg("recover")
            .arg(&package)
            .arg("--trust")
            .arg(setup.keys())
            .arg("--report")
            .arg(&report)
            .arg("--json");
        let (seconds, _) = run::timed(&mut cmd)?;
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
        if report["outcome"] != "success" {
            bail!("the EDL job failed: {}", report["error"]);
        }
        Ok((seconds, report))
    };
    recover(&zeros)?;
    let (mut full, mut delta) = (Vec::new(), Vec::new());
    let mut skipped = serde_json::Value::Null;
    for i in 0..setup.runs {
        let mut reflash = || -> Result<()> {
            let (s, report) = recover(&old)?;
            delta.push(s);
            skipped = report["images"][0]["skipped"].clone();
            Ok(())
        };
        if i % 2 == 0 {
            full.push(recover(&zeros)?.0);
            reflash()?;
        } else {
            reflash()?;
            full.push(recover(&zeros)?.0);
        }
    }
    sim.stop();
    let (f, d) = (median(&full), median(&delta));
    let ratio = d / f;
    Ok(Figure {
        number: 9,
        what: format!(
            "EDL re-flash of a {} MiB build differing in 10 % of its 1 MiB blocks: \
             flashline / a full write of the same build (whole `recover` jobs)",
            len / MIB
        ),
        measured: format!(
            "{ratio:.2} ({d:.2} s vs {f:.2} s), over a link shaped to {LINK_RATE}B/s + \
             {LINK_LATENCY} per round trip"
        ),
        target: "≤ 0.3".into(),
        met: Some(ratio <= 0.3),
        details: vec![
            format!("full write (s): {}", list(&full)),
            format!("re-flash (s): {}", list(&delta)),
            format!("re-flash report: {skipped}"),
            "the virtual EDL device takes the host's bytes at the link rate and charges \
             the latency each time the host speaks after it (`sim edl --link-rate \
             --latency`)"
                .into(),
        ],
    })
}
