//! Frame times of the GUI while 8 virtual phones flash at once.
//!
//! ```sh
//! cargo run --release --example frame_times
//! ```
//!
//! The real app (state, bridge, engine jobs on tokio's blocking pool) runs in an
//! egui_kittest harness; the virtual phones run in this process. Each frame is paced at
//! 60 Hz, and its CPU time is measured as a window would spend it: draining the engine's
//! events, laying out the whole UI, and tessellating what it draws (the GPU's part is not
//! included). It prints p50, p99 and the worst frame while the jobs run.

use std::time::{Duration, Instant};

use eframe::egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use flashline::engine::Outcome;
use flashline::gui::state::{AppState, CheckState, PackageState};
use flashline::gui::{AppConfig, BenchSpec, DemoBench, FlashlineApp};

const PHONES: usize = 8;
const FRAME: Duration = Duration::from_micros(16_667);
const TIMEOUT: Duration = Duration::from_secs(300);

fn main() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::env::set_var("FLASHLINE_HOME", dir.path().join("home"));
    let bench = DemoBench::start(
        &dir.path().join("bench"),
        &flashline::device::bench::default_dir(),
        BenchSpec {
            phones: PHONES,
            qualcomm: false,
        },
    )
    .expect("the virtual phones start");
    let config = AppConfig::demo(&bench);
    let mut h = Harness::builder()
        .with_size([1280.0, 800.0])
        .build_eframe(move |cc| FlashlineApp::new(cc, config).expect("the app starts"));

    wait(&mut h, "the phones", |s| {
        s.devices.len() == PHONES && s.devices.iter().all(|d| d.firmware.is_some())
    });
    let name = bench
        .packages
        .phone
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    h.get_by_role_and_label(Role::Button, &name).click();
    wait(&mut h, "the package", |s| {
        matches!(s.package, PackageState::Ready(_))
    });
    for n in 1..=PHONES {
        h.get_by_role_and_label(Role::CheckBox, &format!("zte-demo-phone FLSIM{n:04}"))
            .click();
        h.run_steps(3);
    }
    wait(&mut h, "the preflights", |s| {
        s.devices
            .iter()
            .all(|d| matches!(d.check, CheckState::Done(_)))
    });
    h.get_by_label(&format!("Flash {PHONES} devices")).click();
    h.run_steps(3);
    h.get_by_label("Start flashing").click();

    let started = Instant::now();
    let mut frames = Vec::new();
    while h
        .state()
        .state()
        .devices
        .iter()
        .any(|d| d.job.as_ref().is_none_or(|j| j.finished.is_none()))
    {
        assert!(started.elapsed() < TIMEOUT, "the jobs did not finish");
        let t = Instant::now();
        h.step();
        let output = h.output();
        let _ = h
            .ctx
            .tessellate(output.shapes.clone(), output.pixels_per_point);
        let spent = t.elapsed();
        frames.push(spent);
        std::thread::sleep(FRAME.saturating_sub(spent));
    }
    let wall = started.elapsed();
    let state = h.state().state();
    let done = state
        .devices
        .iter()
        .filter(|d| {
            d.job
                .as_ref()
                .and_then(|j| j.finished.as_ref())
                .map(|f| f.outcome)
                == Some(Outcome::Success)
        })
        .count();
    let bytes: u64 = state
        .devices
        .iter()
        .filter_map(|d| d.job.as_ref())
        .map(|j| j.done())
        .sum();
    frames.sort();
    let at = |q: f64| frames[((frames.len() - 1) as f64 * q).round() as usize];
    println!(
        "{PHONES} virtual phones flashed in parallel: {done} succeeded, {} MiB written in {:.1} s",
        bytes / (1024 * 1024),
        wall.as_secs_f64()
    );
    println!(
        "{} frames: p50 {:.2} ms, p99 {:.2} ms, worst {:.2} ms (CPU time per frame: events, layout, tessellation)",
        frames.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        frames.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
    drop(h);
    bench.stop();
    assert_eq!(done, PHONES, "every phone was flashed");
}

fn wait(h: &mut Harness<'_, FlashlineApp>, what: &str, done: impl Fn(&AppState) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done(h.state().state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.run_steps(10);
}
