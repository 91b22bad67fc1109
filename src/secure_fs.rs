//! Private files under flashline's home: owner-only, created new, never through a symlink.
//!
//! Reports and identity backups hold IMEIs and RF calibration, the station key authenticates
//! backups: other users of the machine must not read them, and nobody must be able to steer
//! a write elsewhere by planting a symbolic link where flashline is about to write (a link
//! from `reports/` to `~/.bashrc`'s folder, say). So:
//!
//! - folders flashline creates are mode 0700, files 0600 (on unix; on Windows they inherit
//!   the user's profile ACL, which keeps other users out: see [`crate::platform`]);
//! - a folder flashline writes into (its home, `reports/`, `backups/`, a backup folder …)
//!   must be a real folder, not a symbolic link; the folders *above* it are not checked,
//!   because dotfile managers commonly link `~/.config`;
//! - files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` (Rust's `create_new`), which
//!   fails on anything already at the path, a symbolic link included, dangling or not;
//! - a file that must be replaced is written to a new temporary file and renamed over the
//!   old one: `rename` replaces a symbolic link itself instead of following it;
//! - files are read with `O_NOFOLLOW` and must be regular files, in a folder that is not a
//!   symbolic link: a planted link cannot feed flashline a file of the attacker's choosing,
//!   nor make it wait on a FIFO.
//!
//! [`crate::state_file`] builds the shared, locked state files (history, journals, the
//! record of trust roots) on these.

use crate::platform;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a folder or file was not used.
fn refused(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}; flashline writes only into real folders it can trust \
             (remove it, or point FLASHLINE_HOME elsewhere)",
            path.display()
        ),
    )
}

/// Makes sure `dir` is a real folder, creating it and any missing parents with mode 0700.
///
/// `dir` itself, the folder flashline writes into, must not be a symbolic link. The
/// folders above it may be: see the module documentation. (Nested folders flashline makes,
/// such as one backup inside the backups folder, come from [`new_private_dir`], which checks
/// the folder they are made in.)
pub fn private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(meta) if meta.file_type().is_symlink() => Err(refused(dir, "a symbolic link")),
        Ok(_) => Err(refused(dir, "not a folder")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            platform::private_dir_mode(std::fs::DirBuilder::new().recursive(true)).create(dir)?;
            // Check what is there now, whoever made it.
            match std::fs::symlink_metadata(dir) {
                Ok(meta) if meta.is_dir() => Ok(()),
                _ => Err(refused(dir, "not a real folder")),
            }
        }
        Err(e) => Err(e),
    }
}

/// Creates a new folder (mode 0700) named `stem` in `root`, or `stem-2`, `stem-3`, … if
/// that name is taken; `root` is checked (and created) by [`private_dir`].
pub fn new_private_dir(root: &Path, stem: &str) -> io::Result<PathBuf> {
    private_dir(root)?;
    let mut builder = std::fs::DirBuilder::new();
    platform::private_dir_mode(&mut builder);
    for n in 1..=MAX_TRIES {
        let dir = root.join(numbered(stem, n, ""));
        match builder.create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(all_taken(root, stem, ""))
}

/// Creates a new file with mode 0600 in a folder checked by [`private_dir`]; fails if
/// anything, a symbolic link included, is already at `path`.
pub fn create_new(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        private_dir(parent)?;
    }
    open_new(path)
}

/// Open options that never follow a symbolic link at the path itself (`O_NOFOLLOW`), never
/// wait on a FIFO (`O_NONBLOCK`, which changes nothing for regular files), and create with
/// mode 0600; what Windows does instead is in [`platform::private_open_options`].
pub(crate) use platform::private_open_options as private_options;

/// `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600, in whatever folder `path` names.
fn open_new(path: &Path) -> io::Result<File> {
    private_options().write(true).create_new(true).open(path)
}

/// Reads the regular file at `path`, at most `max` bytes, without following a symbolic link
/// (neither `path` nor its folder may be one). `Ok(None)` if there is nothing at `path`.
pub fn read(path: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::symlink_metadata(parent) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(refused(parent, "a symbolic link"))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            _ => {}
        }
    }
    let file = match private_options().read(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return match std::fs::symlink_metadata(path) {
                Ok(meta) if meta.file_type().is_symlink() => Err(refused(path, "a symbolic link")),
                _ => Err(e),
            }
        }
    };
    if !file.metadata()?.is_file() {
        return Err(refused(path, "not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is larger than {max} bytes", path.display()),
        ));
    }
    Ok(Some(bytes))
}

/// Removes the file at `path` (a symbolic link there is removed itself), unless its folder
/// is a symbolic link: then the file is not flashline's and is left alone.
pub fn remove(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        if std::fs::symlink_metadata(parent).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(refused(parent, "a symbolic link"));
        }
    }
    std::fs::remove_file(path)
}

/// Writes `bytes` to a new file at `path` (see [`create_new`]) and syncs it.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = create_new(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes `bytes` to a new file named `stem.ext` in `dir`, or `stem-2.ext`, `stem-3.ext`, …
/// if that name is taken: nothing already there is ever overwritten. Returns the path.
pub fn write_unique(dir: &Path, stem: &str, ext: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let ext = format!(".{ext}");
    for n in 1..=MAX_TRIES {
        let path = dir.join(numbered(stem, n, &ext));
        match write_new(&path, bytes) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(all_taken(dir, stem, &ext))
}

/// How many numbered names are tried before giving up.
const MAX_TRIES: u32 = 1000;

/// `stem.ext`, then `stem-2.ext`, `stem-3.ext`, …
fn numbered(stem: &str, n: u32, ext: &str) -> String {
    if n == 1 {
        format!("{stem}{ext}")
    } else {
        format!("{stem}-{n}{ext}")
    }
}

fn all_taken(dir: &Path, stem: &str, ext: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{MAX_TRIES} entries named {stem}*{ext} already exist in {}",
            dir.display()
        ),
    )
}

/// Replaces whatever file is at `path` with `bytes`, atomically: a new private file beside
/// it, synced, then renamed over it. A symbolic link at `path` is replaced, not followed.
///
/// This is for a path the user named (`--report PATH`, `--trust DIR`): its folder is created
/// if missing but, being the user's choice, may be reached through links. Files flashline
/// names itself under its home use [`replace_private`].
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = folder(path);
    platform::private_dir_mode(std::fs::DirBuilder::new().recursive(true)).create(dir)?;
    swap_in(dir, path, bytes)
}

/// [`replace`] for a file under flashline's home: its folder must be a real folder (see
/// [`private_dir`]).
pub fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = folder(path);
    private_dir(dir)?;
    swap_in(dir, path, bytes)
}

/// Temporary file in `dir`, synced, renamed over `path`, then the folder synced: a power cut
/// leaves the old file or the new one, never a torn one.
fn swap_in(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    /// Makes temporary names unique between threads of this process.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| refused(path, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(
        ".{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);
    let written = open_new(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    sync_dir(dir)
}

/// Makes a rename in `dir` durable (unix; elsewhere the rename is what the platform offers).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// The folder `path` is in (`.` for a bare name).
fn folder(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use crate::platform::symlink;

    fn mode(path: &Path) -> u32 {
        platform::ownership(&std::fs::symlink_metadata(path).unwrap())
            .unwrap()
            .mode
            & 0o777
    }

    #[test]
    fn folders_and_files_are_owner_only() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        let path = write_unique(&dir, "r", "json", b"{}").unwrap();
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn unique_names_never_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let a = write_unique(tmp.path(), "same", "json", b"1").unwrap();
        let b = write_unique(tmp.path(), "same", "json", b"2").unwrap();
        assert_ne!(a, b);
        assert_eq!(std::fs::read(a).unwrap(), b"1");
        assert_eq!(std::fs::read(b).unwrap(), b"2");
    }

    #[test]
    fn symlinks_are_refused_and_their_targets_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        std::fs::write(victim.join("file"), b"precious").unwrap();
        // A linked folder.
        let home = tmp.path().join("home");
        std::fs::create_dir(&home).unwrap();
        symlink(&victim, home.join("reports")).unwrap();
        let err = write_unique(&home.join("reports"), "r", "json", b"x").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let err = new_private_dir(&home.join("reports"), "sub").unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // Links above the folder written into are followed: ~/.config may be one.
        let config = tmp.path().join("config");
        symlink(&victim, &config).unwrap();
        write_unique(&config.join("flashline/reports"), "r", "json", b"x").unwrap();
        std::fs::remove_dir_all(victim.join("flashline")).unwrap();
        // A linked file.
        symlink(victim.join("file"), home.join("r.json")).unwrap();
        assert!(write_new(&home.join("r.json"), b"x").is_err());
        // Replacing swaps the link itself.
        replace(&home.join("r.json"), b"new").unwrap();
        assert!(!std::fs::symlink_metadata(home.join("r.json"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(victim.join("file")).unwrap(), b"precious");
        assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 1);
    }
}
