//! flashline's benchmark: the real binaries side by side, against virtual phones over
//! loopback TCP (and, for figure 10, Debian's qdl in the virtual USB lab), reported as
//! ratios because the machine is shared and noisy.
//!
//! ```text
//! cargo run --release --example bench             # full run, a few minutes
//! cargo run --release --example bench -- --quick  # small images, a smoke run
//! ```
//!
//! It prints a table and writes it, with the raw numbers, to `target/bench/results.md`.

mod figures;
mod lab;
mod run;
mod speed;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;

use figures::{make_images, Figure};
use run::Setup;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

#[derive(Parser)]
#[command(about = "flashline side by side with Google's fastboot, the link and the hash")]
struct Args {
    /// Small images and two runs per program: a smoke run of well under a minute.
    #[arg(long)]
    quick: bool,
    /// Measured runs per program for the comparisons (after a warm-up run).
    #[arg(long)]
    runs: Option<usize>,
    /// Folder for images and packages (several GiB; default: a temporary folder).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Folder for the virtual phones' partitions (default: a temporary folder on /dev/shm
    /// when it exists, so that no disk write-back slows the phones down).
    #[arg(long)]
    phones: Option<PathBuf>,
    /// Where to write the results table.
    #[arg(long, default_value = "target/bench/results.md")]
    out: PathBuf,
    /// The flashline binary (default: target/release/flashline, built first).
    #[arg(long)]
    flashline: Option<PathBuf>,
    /// Measure only these figures (e.g. `--only 3,7`).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
}

/// Image sizes per figure.
struct Sizes {
    fig1: u64,
    fig2: u64,
    fig2_max_download: u64,
    shaped: u64,
    fig6: u64,
    fig6_max_download: u64,
    fig7: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let sizes = if args.quick {
        Sizes {
            fig1: 64 * MIB,
            fig2: 192 * MIB,
            fig2_max_download: 16 * MIB,
            shaped: 16 * MIB,
            fig6: 256 * MIB,
            fig6_max_download: 16 * MIB,
            fig7: 16 * MIB,
        }
    } else {
        Sizes {
            fig1: GIB,
            fig2: 3 * GIB,
            fig2_max_download: 256 * MIB,
            shaped: 256 * MIB,
            fig6: 4 * GIB,
            fig6_max_download: 256 * MIB,
            fig7: 256 * MIB,
        }
    };
    let work = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            tempfile::tempdir_in(d)?
        }
        None => tempfile::tempdir()?,
    };
    let phones_tmp = match &args.phones {
        Some(d) => tempfile::tempdir_in(d)?,
        None if std::path::Path::new("/dev/shm").is_dir() => tempfile::tempdir_in("/dev/shm")?,
        None => tempfile::tempdir_in(work.path())?,
    };
    let setup = Setup {
        flashline: flashline_binary(args.flashline)?,
        fastboot: run::which("fastboot"),
        openssl: run::which("openssl"),
        time: Some(PathBuf::from("/usr/bin/time")).filter(|p| p.is_file()),
        work: work.path().to_path_buf(),
        phones: phones_tmp.path().to_path_buf(),
        quick: args.quick,
        runs: args.runs.unwrap_or(if args.quick { 2 } else { 3 }),
    };
    let started = Instant::now();
    let machine = machine();
    let load_before = load();
    eprintln!("{machine}");
    let mut keygen = setup.flashline();
    keygen
        .args(["key", "gen", "--name", "bench", "--out"])
        .arg(setup.keys());
    run::timed(&mut keygen)?;

    let mut results: Vec<Figure> = Vec::new();
    let mut show = |figure: Figure| {
        eprintln!(
            "figure {}: {} — {}",
            figure.number, figure.what, figure.measured
        );
        results.push(figure);
    };

    let wanted = |n: u8| args.only.is_empty() || args.only.contains(&n);
    if [1, 4, 5].into_iter().any(wanted) {
        eprintln!("preparing a {} image", size_text(sizes.fig1));
        let fig1 = make_images(&setup, "fig1", sizes.fig1, 1)?;
        if wanted(1) {
            show(figures::versus_fastboot(&setup, 1, &fig1, sizes.fig1)?);
        }
        if wanted(4) {
            show(figures::verification(&setup, &fig1)?);
        }
        if wanted(5) {
            let shaped = make_images(&setup, "shaped", sizes.shaped, 3)?;
            show(figures::verification_overhead(&setup, &fig1, &shaped)?);
            remove_images(&shaped);
        }
        remove_images(&fig1);
    }
    if wanted(3) {
        let shaped = make_images(&setup, "shaped", sizes.shaped, 3)?;
        show(figures::link_rate(&setup, &shaped)?);
        remove_images(&shaped);
    }
    if wanted(2) {
        eprintln!("preparing a {} image", size_text(sizes.fig2));
        let fig2 = make_images(&setup, "fig2", sizes.fig2, 2)?;
        show(figures::versus_fastboot(
            &setup,
            2,
            &fig2,
            sizes.fig2_max_download,
        )?);
        remove_images(&fig2);
    }
    if wanted(6) {
        eprintln!("preparing a {} image", size_text(sizes.fig6));
        let fig6 = make_images(&setup, "fig6", sizes.fig6, 6)?;
        show(figures::peak_rss(&setup, &fig6, sizes.fig6_max_download)?);
        remove_images(&fig6);
    }
    if wanted(7) {
        let fig7 = make_images(&setup, "fig7", sizes.fig7, 7)?;
        show(figures::many_devices(&setup, &fig7)?);
        remove_images(&fig7);
    }

    if wanted(8) {
        show(speed::realistic_set(&setup)?);
    }
    if wanted(9) {
        show(speed::edl_reflash(&setup)?);
    }
    if wanted(10) {
        show(lab::edl_versus_qdl()?);
    }

    results.sort_by_key(|f| f.number);
    let table = render(
        &results,
        &machine,
        &load_before,
        &load(),
        started.elapsed().as_secs_f64(),
        &setup,
    );
    println!("{table}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &table)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    eprintln!("written to {}", args.out.display());
    Ok(())
}

fn size_text(bytes: u64) -> String {
    if bytes >= GIB {
        format!("{} GiB", bytes / GIB)
    } else {
        format!("{} MiB", bytes / MIB)
    }
}

fn remove_images(images: &figures::Images) {
    let _ = std::fs::remove_file(&images.image);
    let _ = std::fs::remove_file(&images.package);
}

/// The flashline binary to measure: the one given, or the release build, brought up to
/// date first when run through cargo.
fn flashline_binary(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    if let Some(cargo) = std::env::var_os("CARGO") {
        let status = std::process::Command::new(cargo)
            .args(["build", "--release", "--bin", "flashline"])
            .status()?;
        if !status.success() {
            bail!("building flashline failed");
        }
    }
    let exe = std::env::current_exe()?;
    // target/release/examples/bench → target/release/flashline
    let path = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|release| release.join("flashline"))
        .filter(|p| p.is_file())
        .context("target/release/flashline not found: run `cargo build --release` first")?;
    Ok(path)
}

/// Date, CPU, cores, kernel and the versions of the programs compared.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or("?".into(), |kib| format!("{} GiB", kib / (1 << 20)));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let version = |program: &str, arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .map(str::to_string)
            })
            .unwrap_or_else(|| format!("{program}: not installed"))
    };
    format!(
        "date {}; {cpu}, {cores} cores, {memory} RAM, Linux {kernel}; {}; {}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now()),
        version("fastboot", "--version"),
        version("openssl", "version"),
    )
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The results as Markdown: a summary table, then the raw numbers of each figure.
fn render(
    results: &[Figure],
    machine: &str,
    load_before: &str,
    load_after: &str,
    seconds: f64,
    setup: &Setup,
) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "flashline benchmark{}\n\n{machine}\nload average {load_before} at the start, \
         {load_after} at the end; {seconds:.0} s in all; median of {} measured runs after a \
         warm-up, programs alternating\n\n",
        if setup.quick { " (--quick)" } else { "" },
        setup.runs
    ));
    out.push_str("| # | What | Measured | Target | Met |\n|---|---|---|---|---|\n");
    for f in results {
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "no",
            None => "n/a",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {met} |\n",
            f.number, f.what, f.measured, f.target
        ));
    }
    out.push('\n');
    for f in results {
        out.push_str(&format!("Figure {}:\n", f.number));
        for d in &f.details {
            out.push_str(&format!("- {d}\n"));
        }
    }
    out
}
