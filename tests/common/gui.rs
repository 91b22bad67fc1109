//! The GUI tests' app set-up: a session that watches no real ports and keeps its files
//! in a test folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flashline::gui::bridge::BridgeConfig;
use flashline::gui::state::Settings;
use flashline::gui::AppConfig;

/// A session with its history, backups and reports in `home`, trusting the keys in
/// `trust_dir`; it watches nothing, trusts no demo key and rescans every 100 ms. Tests
/// change the fields they need.
pub fn app_config(home: &Path, trust_dir: PathBuf) -> AppConfig {
    AppConfig {
        bridge: BridgeConfig {
            watch: Vec::new(),
            watch_virtual: false,
            demo_trust: false,
            history_path: home.join("history.json"),
            backups_dir: home.join("backups"),
            scan_every: Duration::from_millis(100),
            system: flashline::doctor::SystemView::here(),
        },
        settings: Settings {
            trust_dir,
            reports_dir: home.join("reports"),
            last_package_dir: None,
            disable_super_optimization: false,
        },
        persist: false,
        quick_packages: Vec::new(),
    }
}
