//! `flashline station`: the bench flashes whatever is plugged in, canaries first, with a
//! kill switch; `flashline station resume` resumes a halted batch from any terminal;
//! `flashline station label` names a slot.
//!
//! People get one line per slot change (and a HALTED block on stderr); `--json` prints every
//! [`StationEvent`] as one JSON object per line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use super::render::{say, say_err};
use super::{load_trust, TrustArg};
use crate::station::control;
use crate::station::runner::{self, StationConfig};
use crate::station::settings::Settings;
use crate::station::{Board, Slot, SlotStatus, StationEvent, Threshold};

/// `flashline station …`.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct StationArgs {
    #[command(subcommand)]
    command: Option<StationCommand>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum StationCommand {
    /// Resume a halted batch (the one running now, or `--batch`): records who and why.
    Resume {
        /// Who resumes.
        #[arg(long)]
        by: String,
        /// Why it is safe to go on, in plain words.
        #[arg(long)]
        reason: String,
        /// The batch folder (default: the newest under flashline's home).
        #[arg(long)]
        batch: Option<PathBuf>,
    },
    /// Name a slot ("left hub, port 3"); an empty label removes it.
    Label {
        /// The slot: a USB port path (`usb:1-1.3`) or a virtual device's address.
        slot: String,
        /// The label.
        label: String,
    },
}

#[derive(Args)]
struct RunArgs {
    /// The package to flash; repeat to offer one per kind of device (each device gets the
    /// first one made for it).
    #[arg(long = "package")]
    packages: Vec<PathBuf>,
    /// The first K devices are canaries: rebooted and checked before anyone else flashes.
    #[arg(long, default_value_t = 0)]
    canary: usize,
    /// Halt once N of the last M jobs failed.
    #[arg(long, default_value = "2/10")]
    max_failures: Threshold,
    /// How long a canary may take to come back reporting the new version.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    verify_timeout: Duration,
    /// The longest a device may stay silent when it owes an answer.
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Stop taking devices after this long (running jobs finish); default: until killed.
    #[arg(long, value_parser = humantime::parse_duration)]
    stop_after: Option<Duration>,
    /// The batch folder (default: a new one under flashline's home).
    #[arg(long)]
    batch: Option<PathBuf>,
    /// Print events as JSON lines.
    #[arg(long)]
    json: bool,
    /// Join the fleet this station file describes: each device is flashed with what the
    /// fleet's rollouts offer it, from the fleet's repository (see README, Fleet).
    #[cfg(feature = "fleet")]
    #[arg(long, value_name = "STATION_FILE", conflicts_with = "packages")]
    fleet: Option<PathBuf>,
    #[command(flatten)]
    trust: TrustArg,
}

/// Runs `flashline station …`.
pub(super) fn run(args: StationArgs) -> Result<ExitCode> {
    let home = crate::paths::home();
    match args.command {
        Some(StationCommand::Resume { by, reason, batch }) => {
            let batch = match batch {
                Some(b) => b,
                None => control::latest_batch(&home)?,
            };
            let path = control::request_resume(&batch, &by, &reason)?;
            say!(
                "resume requested by {by} ({}); the running station takes it within a second",
                path.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(StationCommand::Label { slot, label }) => {
            let mut settings = Settings::load(&home);
            settings.set_label(&slot, &label);
            settings
                .save(&home)
                .with_context(|| format!("cannot write {}", Settings::path(&home).display()))?;
            say!("{slot}: {label}");
            Ok(ExitCode::SUCCESS)
        }
        None => station(args.run, &home),
    }
}

fn station(args: RunArgs, home: &std::path::Path) -> Result<ExitCode> {
    // Ctrl-C or SIGTERM ends the batch as `--stop-after` does: no new device is taken, the
    // running jobs finish, and the final batch report is written (and, for a fleet member,
    // queued for the bucket). Killing a station in the middle of a write is what the
    // journal exists for, not how a shift should end. Set up before any thread starts, so
    // that every thread inherits the blocked signals.
    let stopped = crate::platform::stop_requests(|| {
        say_err!("stopping: running jobs finish, no new device is taken (again to quit now)")
    })
    .context("cannot watch for Ctrl-C/SIGTERM")?;
    #[cfg(feature = "fleet")]
    let fleet = args.fleet.clone();
    #[cfg(not(feature = "fleet"))]
    let fleet: Option<PathBuf> = None;
    if args.packages.is_empty() && fleet.is_none() {
        anyhow::bail!("name the package to flash with --package");
    }
    let sound = Settings::load(home).sound;
    #[allow(unused_mut)]
    let mut config = StationConfig {
        canaries: args.canary,
        max_failures: args.max_failures,
        verify_timeout: args.verify_timeout,
        batch_dir: args.batch.clone(),
        device_timeout: args.timeout,
        ..StationConfig::new(args.packages.clone(), load_trust(&args.trust)?, home)
    };
    #[cfg(feature = "fleet")]
    if let Some(file) = &fleet {
        config = crate::fleet::gateway::join(config, file)
            .with_context(|| format!("cannot join the fleet of {}", file.display()))?;
    }
    let (tx, rx) = mpsc::channel();
    let handle = runner::start(config, move |event| {
        let _ = tx.send(event);
    })?;
    let deadline = args.stop_after.map(|d| Instant::now() + d);
    let mut view = View {
        board: Board::default(),
        json: args.json,
        sound,
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(event) => view.show(&event),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) || stopped.load(Ordering::SeqCst) {
            handle.request_stop();
        }
        if handle.is_finished() {
            break;
        }
    }
    while let Ok(event) = rx.try_recv() {
        view.show(&event);
    }
    let dir = handle.dir().to_path_buf();
    let report = handle.stop();
    if !args.json {
        say!("{}", report.summary().trim_end());
        say!(
            "batch report: {}",
            dir.join(crate::station::report::JSON).display()
        );
    }
    let failed = report.devices.iter().any(|d| {
        d.outcome
            .is_some_and(|o| o != crate::engine::Outcome::Success)
    });
    Ok(if !report.halts.is_empty() && view.board.halted.is_some() {
        ExitCode::from(super::EXIT_DEVICE_ERROR)
    } else if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// What people see.
struct View {
    board: Board,
    json: bool,
    sound: bool,
}

impl View {
    fn show(&mut self, event: &StationEvent) {
        let before = match event {
            StationEvent::Slot(s) => self.board.slots.get(&s.key).cloned(),
            _ => None,
        };
        let announced = self.board.apply(event);
        if self.json {
            println!(
                "{}",
                serde_json::to_string(event).expect("events serialise")
            );
            return;
        }
        match event {
            StationEvent::Started {
                dir,
                packages,
                canaries,
                max_failures,
            } => say!(
                "station: {} | canaries {canaries} | kill switch {max_failures} | batch {}",
                if packages.is_empty() {
                    "packages from the fleet's rollouts".to_string()
                } else {
                    packages.join(", ")
                },
                dir.display()
            ),
            StationEvent::Slot(slot) => {
                if worth_a_line(before.as_ref(), slot) {
                    say!("{}", line(slot));
                }
            }
            StationEvent::CanariesPassed { count } => {
                say!("canaries passed ({count}): the rest of the bench goes ahead")
            }
            StationEvent::Halted(halt) => {
                say_err!("HALTED: {}", halt.reasons.join("; "));
                for r in &halt.reports {
                    say_err!("  report: {}", r.display());
                }
                say_err!(
                    "  no new flash starts; running ones finish. Resume with: flashline station resume --by NAME --reason TEXT"
                );
            }
            StationEvent::Resumed(r) => say!("resumed by {}: {}", r.by, r.reason),
            StationEvent::Fleet(status) => say!("{}", fleet_line(status)),
        }
        if announced.is_some() && self.sound {
            // The terminal's bell: the one sound every terminal has, with no library.
            eprint!("\x07");
        }
    }
}

/// The fleet's connections in one line.
fn fleet_line(status: &crate::station::fleet::FleetStatus) -> String {
    let link = |name: &str, link: &crate::station::fleet::Link| {
        let mut text = format!("{name} {}", link.state.word());
        if let Some(detail) = &link.detail {
            text.push_str(&format!(" ({detail})"));
        }
        text
    };
    let mut text = format!(
        "fleet {}: {}; {}; {}; outbox {} pending",
        status.station,
        link("repository", &status.repository),
        link("hawkBit", &status.rollouts),
        link("reports", &status.reports),
        status.outbox_pending
    );
    if let Some(until) = &status.fresh_until {
        text.push_str(&format!("; metadata fresh until {until}"));
    }
    text
}

/// A slot gets a line when what it shows changes, not for every progress step.
fn worth_a_line(before: Option<&Slot>, now: &Slot) -> bool {
    before.is_none_or(|b| {
        b.status != now.status
            || b.stage != now.stage
            || b.message != now.message
            || b.after != now.after
    })
}

fn line(slot: &Slot) -> String {
    let mut text = format!(
        "[{}] {:<11}",
        slot.name(),
        slot.status.word().to_uppercase()
    );
    if slot.status == SlotStatus::Empty {
        return text;
    }
    text.push_str(&format!(
        " {} {}",
        slot.model.as_deref().unwrap_or("?"),
        slot.serial.as_deref().unwrap_or("?")
    ));
    if let Some(before) = &slot.before {
        text.push_str(&format!(" {before}"));
        if let Some(after) = &slot.after {
            text.push_str(&format!(" -> {after}"));
        }
    }
    if slot.canary {
        text.push_str(" [canary]");
    }
    if let Some(stage) = slot.stage {
        text.push_str(&format!(
            " {}",
            serde_json::to_string(&stage)
                .unwrap_or_default()
                .trim_matches('"')
        ));
    }
    if let Some(message) = &slot.message {
        text.push_str(&format!(": {message}"));
    }
    text
}
