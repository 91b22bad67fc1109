//! Small files flashline keeps for itself (the flash history, job journals, the record of
//! installed trust roots) and how they are changed safely when several flashline processes
//! share one home.
//!
//! A change is a read-modify-write under [`Lock`], an OS file lock on `<file>.lock` (released
//! when dropped or when the process dies, so a crash never leaves it held), and the new
//! contents replace the old with [`replace`]: temporary file, fsync, rename, fsync of the
//! folder, so a power cut leaves the old file or the new one, never a torn one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An exclusive lock on `<file>.lock`, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _held: File,
}

impl Lock {
    /// Waits for and takes the lock that guards `file` (creating its folder if needed).
    pub fn take(file: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(folder(file))?;
        let mut name = file.file_name().unwrap_or_default().to_owned();
        name.push(".lock");
        let held = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(file).with_file_name(name))?;
        held.lock()?;
        Ok(Lock { _held: held })
    }
}

/// Replaces `file` with `contents` atomically and durably.
pub fn replace(file: &Path, contents: &[u8]) -> io::Result<()> {
    let dir = folder(file);
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// The folder `file` is in (`.` for a bare name).
fn folder(file: &Path) -> &Path {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}
