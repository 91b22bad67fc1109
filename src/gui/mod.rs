//! The desktop GUI: a technician's bench, on eframe/egui.
//!
//! One-way data flow, as in the rest of flashline: the views render a plain [`AppState`]
//! and turn clicks into [`state::Intent`]s; the [`bridge`] runs them on tokio's blocking
//! pool (engine jobs, discovery, package checks, file dialogs) and sends back
//! [`state::Msg`]s, each one waking the UI with `request_repaint`. The UI thread never
//! blocks and holds no flashing logic: preflight verdicts, plans and progress all come from
//! the engine's events.

mod app;
pub mod bench;
pub mod bridge;
pub mod catalog;
pub mod doctor;
#[cfg(feature = "fleet")]
pub mod repo;
pub mod state;
pub mod station;
mod views;

use eframe::egui;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub use app::{AppConfig, FlashlineApp};
pub use bench::{BenchSpec, DemoBench};
pub use state::AppState;

/// eframe's id for the app; it names the folder its settings persist in.
pub const APP_ID: &str = "flashline";

/// What the window opens on.
#[derive(Debug, Clone, Copy)]
pub enum Launch<'a> {
    /// The technician's real bench: USB and serial devices.
    Desktop,
    /// The built-in virtual bench, its files kept in the folder if one is given.
    Demo(Option<&'a Path>),
}

/// Whether a window can open: a display server is named in the environment.
pub fn display_available() -> bool {
    if cfg!(any(target_os = "windows", target_os = "macos")) {
        return true;
    }
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
}

/// Opens the window and runs until it is closed.
pub fn run(launch: Launch<'_>) -> ExitCode {
    if !display_available() {
        eprintln!(
            "error: no display (neither DISPLAY nor WAYLAND_DISPLAY is set), so the GUI cannot open.\n\
             Use the command line instead: `flashline --help`, or `flashline demo --cli`."
        );
        return ExitCode::from(2);
    }
    match window(launch) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn window(launch: Launch<'_>) -> anyhow::Result<()> {
    use anyhow::Context;
    let temp;
    let (config, bench) = match launch {
        Launch::Desktop => (AppConfig::desktop(), None),
        Launch::Demo(dir) => {
            let work: PathBuf = match dir {
                Some(d) => d.to_path_buf(),
                None => {
                    temp = tempfile::tempdir().context("cannot create a temporary folder")?;
                    temp.path().to_path_buf()
                }
            };
            // The demo keeps its reports, history and bench announcements in its own folder,
            // away from the technician's real ones. Nothing else runs yet, so setting the
            // variable here cannot race another thread.
            std::env::set_var("FLASHLINE_HOME", work.join("home"));
            let mut bench = DemoBench::start(
                &work,
                &crate::device::bench::default_dir(),
                BenchSpec::default(),
            )?;
            #[cfg(unix)]
            bench.start_zxic(&crate::device::bench::default_dir())?;
            (AppConfig::demo(&bench), Some(bench))
        }
    };
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title(match launch {
                Launch::Desktop => "flashline",
                Launch::Demo(_) => "flashline — demo bench (virtual devices)",
            })
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([900.0, 560.0])
            .with_drag_and_drop(true),
        persist_window: config.persist,
        ..eframe::NativeOptions::default()
    };
    let result = eframe::run_native(
        APP_ID,
        options,
        Box::new(move |cc| Ok(Box::new(FlashlineApp::new(cc, config)?))),
    );
    if let Some(bench) = bench {
        bench.stop();
    }
    result.map_err(|e| anyhow::anyhow!("the window could not run: {e}"))
}

/// How often discovery looks for devices.
pub const SCAN_EVERY: Duration = Duration::from_millis(500);
