//! The eframe app: drains the bridge into the state, draws the views, hands clicks to the
//! bridge, and persists the settings.

use eframe::egui;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::device::quirks::Quirks;
use crate::device::Mode;

use super::bench::DemoBench;
use super::bridge::{Bridge, BridgeConfig};
use super::state::{AppState, Intent, RecoveryGuide, Settings};
use super::views;

/// Key of the persisted settings in eframe's storage.
const SETTINGS_KEY: &str = "settings";

/// How the app is set up for a session.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// What the bridge watches and trusts.
    pub bridge: BridgeConfig,
    /// Settings to start with when nothing was persisted (or persistence is off).
    pub settings: Settings,
    /// Load and save the settings through eframe's storage.
    pub persist: bool,
    /// Packages offered as one-click buttons.
    pub quick_packages: Vec<PathBuf>,
}

impl AppConfig {
    /// The technician's real bench.
    pub fn desktop() -> Self {
        AppConfig {
            bridge: BridgeConfig {
                watch: Vec::new(),
                watch_virtual: false,
                demo_trust: false,
                history_path: crate::paths::history_file(),
                backups_dir: crate::paths::backups_dir(),
                scan_every: super::SCAN_EVERY,
                system: crate::doctor::SystemView::here(),
            },
            settings: Settings::default(),
            persist: true,
            quick_packages: Vec::new(),
        }
    }

    /// The demo bench: its phones watched, the demo key trusted for them, its packages
    /// one click away, and nothing persisted (the bench lives in a temporary folder).
    pub fn demo(bench: &DemoBench) -> Self {
        let home = bench.work_dir().join("home");
        AppConfig {
            bridge: BridgeConfig {
                watch: bench.phone_addresses(),
                watch_virtual: true,
                demo_trust: true,
                history_path: home.join("history.json"),
                backups_dir: home.join("backups"),
                scan_every: super::SCAN_EVERY,
                // The virtual devices are always seen; the doctor still looks at the real
                // system, which is where a technician trying the demo would plug a device.
                system: crate::doctor::SystemView::here(),
            },
            settings: Settings {
                trust_dir: home.join("trust"),
                reports_dir: home.join("reports"),
                last_package_dir: Some(bench.work_dir().to_path_buf()),
            },
            persist: false,
            quick_packages: bench.packages.all(),
        }
    }
}

/// The GUI application.
pub struct FlashlineApp {
    state: AppState,
    bridge: Bridge,
    persist: bool,
}

impl FlashlineApp {
    /// Builds the app and starts its workers.
    pub fn new(cc: &eframe::CreationContext<'_>, config: AppConfig) -> std::io::Result<Self> {
        let settings = match (config.persist, cc.storage) {
            (true, Some(storage)) => {
                eframe::get_value(storage, SETTINGS_KEY).unwrap_or(config.settings)
            }
            _ => config.settings,
        };
        let quirks = Quirks::builtin();
        let guides = guides(&quirks);
        let station_home = config.bridge.history_path.parent().map(Path::to_path_buf);
        let bridge = Bridge::start(cc.egui_ctx.clone(), config.bridge, settings.clone(), quirks)?;
        let mut state = AppState::new(settings, guides);
        state.quick_packages = config.quick_packages;
        if let Some(home) = station_home {
            state.station.load_settings(&home);
            #[cfg(feature = "fleet")]
            state
                .repo
                .configure_from_home(&home, &state.settings.trust_dir);
        }
        Ok(FlashlineApp {
            state,
            bridge,
            persist: config.persist,
        })
    }

    /// The state, as the views see it.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    fn execute(&mut self, intents: Vec<Intent>) {
        for intent in intents {
            self.bridge.execute(intent, &self.state.settings);
        }
    }
}

impl eframe::App for FlashlineApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let now = Instant::now();
        let mut follow = Vec::new();
        for msg in self.bridge.drain() {
            follow.extend(self.state.apply(msg, now));
        }
        let dropped = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .find(|p| !p.as_os_str().is_empty())
        });
        if let Some(path) = dropped {
            follow.push(self.state.open_package(path));
        }
        follow.extend(self.state.pending_checks());
        follow.extend(self.state.pending_catalog());
        self.execute(follow);
        // Rates and ETAs move with the clock, not only with events.
        if self.state.devices.iter().any(|d| d.busy()) {
            ctx.request_repaint_after(Duration::from_millis(250));
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let mut intents = Vec::new();
        views::show(ui, &mut self.state, &mut intents, Instant::now());
        intents.extend(self.state.pending_checks());
        intents.extend(self.state.pending_catalog());
        self.execute(intents);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.persist {
            eframe::set_value(storage, SETTINGS_KEY, &self.state.settings);
        }
    }
}

/// The recovery guides of the quirks file.
fn guides(quirks: &Quirks) -> Vec<RecoveryGuide> {
    quirks
        .models
        .iter()
        .filter_map(|m| {
            let r = m.recovery.as_ref()?;
            Some(RecoveryGuide {
                product: m.product.clone(),
                name: m.name.clone().unwrap_or_else(|| m.product.clone()),
                // The quirks file only names these three (checked when it is parsed).
                mode: match r.mode.as_str() {
                    "edl" => Mode::Edl,
                    "zxic" => Mode::Zxic,
                    "unisoc" => Mode::Unisoc,
                    _ => Mode::Fastboot,
                },
                steps: r.steps.clone(),
            })
        })
        .collect()
}
