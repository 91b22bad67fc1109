//! Frame times of the GUI while 8 virtual phones flash at once.
//!
//! ```sh
//! cargo run --release --example frame_times
//! ```
//!
//! The real app (state, bridge, engine jobs on tokio's blocking pool) runs in an
//! egui_kittest harness; the virtual phones run in this process. Frames are paced at 60 Hz
//! while the phones are flashed, three times over. Each frame does what a window's frame
//! does on the UI thread: drain the engine's events, lay out the whole UI, tessellate what
//! it draws (the GPU's part is not included). The example prints p50, p99 and the worst
//! frame in wall-clock time, which includes waiting for a core while the 8 jobs, the 8
//! virtual phones and anything else on the machine share it.

use std::time::{Duration, Instant};

use eframe::egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use flashline::engine::Outcome;
use flashline::gui::state::{AppState, CheckState, PackageState};
use flashline::gui::{AppConfig, BenchSpec, DemoBench, FlashlineApp};

const PHONES: usize = 8;
const ROUNDS: usize = 3;
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
    let started = Instant::now();
    let mut wall = Vec::new();
    for _ in 0..ROUNDS {
        h.get_by_label(&format!("Flash {PHONES} devices")).click();
        h.run_steps(3);
        h.get_by_label("Start flashing").click();
        h.run_steps(3);
        while h.state().state().devices.iter().any(|d| d.busy()) {
            assert!(started.elapsed() < TIMEOUT, "the jobs did not finish");
            let t = Instant::now();
            h.step();
            let output = h.output();
            let _ = h
                .ctx
                .tessellate(output.shapes.clone(), output.pixels_per_point);
            let spent = t.elapsed();
            wall.push(spent);
            std::thread::sleep(FRAME.saturating_sub(spent));
        }
        wait(&mut h, "the reports", |s| s.reports.len() % PHONES == 0);
    }
    let elapsed = started.elapsed();
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
    println!(
        "{PHONES} virtual phones flashed in parallel, {ROUNDS} times: {} MiB in {:.1} s; last round {done} of {PHONES} succeeded",
        (ROUNDS * PHONES) as u64 * bench_bytes(&h) / (1024 * 1024),
        elapsed.as_secs_f64()
    );
    println!("{} frames at 60 Hz while flashing", wall.len());
    report("wall-clock", &mut wall);
    drop(h);
    bench.stop();
    assert_eq!(done, PHONES, "every phone was flashed");
}

/// Bytes each phone's job writes.
fn bench_bytes(h: &Harness<'_, FlashlineApp>) -> u64 {
    let jobs = h
        .state()
        .state()
        .devices
        .iter()
        .filter_map(|d| d.job.as_ref());
    jobs.map(|j| j.total).max().unwrap_or(0)
}

fn report(what: &str, frames: &mut [Duration]) {
    frames.sort();
    let at = |q: f64| frames[((frames.len() - 1) as f64 * q).round() as usize];
    println!(
        "  {what:<14} p50 {:6.2} ms   p99 {:6.2} ms   worst {:6.2} ms",
        at(0.50).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        frames.last().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    );
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
