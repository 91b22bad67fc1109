//! Where flashline keeps its own files: trust keys, reports, the per-device history.
//!
//! Everything lives under one home directory, `$FLASHLINE_HOME` if set (tests and
//! technicians with several benches use it), else the platform's config directory.

use std::path::{Path, PathBuf};

/// flashline's home directory.
pub fn home() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLASHLINE_HOME") {
        return PathBuf::from(dir);
    }
    dirs::config_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("flashline")
}

/// The default trust directory: one `.pub` file per trusted signing key.
pub fn trust_dir() -> PathBuf {
    home().join("trust")
}

/// Where job reports are written unless `--report` says otherwise.
pub fn reports_dir() -> PathBuf {
    home().join("reports")
}

/// Where copies of identity partitions (IMEI, NV, calibration) are kept.
pub fn backups_dir() -> PathBuf {
    home().join("backups")
}

/// The local record of what was flashed onto which serial number.
pub fn history_file() -> PathBuf {
    home().join("history.json")
}

/// Why running as root is a bad idea here, if it is.
///
/// flashline needs no root: the udev rules (`flashline udev-rules`) give the logged-in user
/// access to the devices it knows. Run as root (say with `sudo`, which keeps the user's
/// `HOME` on many systems), it would create its history, journal, reports, backups and
/// station key owned by root inside that user's home, all private (0600/0700): every later
/// run as the user then fails to read or update them. So the warning is given exactly when
/// the effective user is root and flashline's home, or the nearest folder above it that
/// exists, belongs to someone else. Root working in root's own home (a CI container with
/// `HOME=/root`) breaks nothing and gets no warning.
pub fn root_warning(euid: u32, home: &Path, home_owner: Option<u32>) -> Option<String> {
    match home_owner {
        Some(owner) if euid == 0 && owner != 0 => Some(format!(
            "warning: flashline is running as root, but its home {} belongs to user {owner}: \
             the files it writes there will belong to root, and later runs as that user will \
             not be able to use them. flashline needs no root: install the udev rules \
             (`flashline udev-rules`) and run it as yourself.",
            home.display()
        )),
        _ => None,
    }
}

/// [`root_warning`] for this process and flashline's [`home`].
///
/// Only where files have Unix owners: on Windows an elevated run writes into the user's
/// profile with the profile's inherited ACL, which keeps the files usable by that user, so
/// there is nothing to warn about.
pub fn root_warning_here() -> Option<String> {
    let (euid, _) = crate::platform::current_user()?;
    let home = home();
    let owner = home
        .ancestors()
        .find_map(|dir| std::fs::metadata(dir).ok())
        .and_then(|meta| crate::platform::ownership(&meta))
        .map(|o| o.uid);
    root_warning(euid, &home, owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_warned_only_in_someone_elses_home() {
        let home = Path::new("/home/tech/.config/flashline");
        let warning = root_warning(0, home, Some(1000)).unwrap();
        assert!(warning.contains("running as root"), "{warning}");
        assert!(warning.contains("udev-rules"), "{warning}");
        // Root in its own home (CI), or a user anywhere: nothing breaks.
        assert_eq!(
            root_warning(0, Path::new("/root/.config/flashline"), Some(0)),
            None
        );
        assert_eq!(root_warning(1000, home, Some(1000)), None);
        assert_eq!(
            root_warning(1000, Path::new("/srv/flashline"), Some(0)),
            None
        );
        assert_eq!(root_warning(0, home, None), None);
    }
}
