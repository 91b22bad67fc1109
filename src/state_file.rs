//! Small files flashline keeps for itself (the flash history, job journals, the record of
//! installed trust roots) and how they are changed safely when several flashline processes
//! share one home.
//!
//! A change is a read-modify-write under [`Lock`], an OS file lock on `<file>.lock` (released
//! when dropped or when the process dies, so a crash never leaves it held), and the new
//! contents replace the old with [`replace`]: temporary file, fsync, rename, fsync of the
//! folder, so a power cut leaves the old file or the new one, never a torn one.
//!
//! These files live under flashline's home, so they are private files in the sense of
//! [`crate::secure_fs`], which does the file work: folders 0700, files 0600, and no symbolic
//! link followed — a link planted for the file, its lock or its folder is refused.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::secure_fs;

/// An exclusive lock on `<file>.lock`, held until dropped.
#[derive(Debug)]
pub struct Lock {
    _held: File,
}

impl Lock {
    /// Waits for and takes the lock that guards `file` (creating its folder if needed).
    pub fn take(file: &Path) -> io::Result<Self> {
        if let Some(dir) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            secure_fs::private_dir(dir)?;
        }
        let mut name = file.file_name().unwrap_or_default().to_owned();
        name.push(".lock");
        let held = secure_fs::private_options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(file).with_file_name(name))?;
        held.lock()?;
        Ok(Lock { _held: held })
    }
}

/// Reads `file`, at most `max` bytes; `Ok(None)` if it does not exist. A symbolic link for
/// the file or its folder is refused (see [`secure_fs::read`]).
pub fn read(file: &Path, max: u64) -> io::Result<Option<Vec<u8>>> {
    secure_fs::read(file, max)
}

/// Replaces `file` with `contents` atomically and durably, in a real, private folder.
pub fn replace(file: &Path, contents: &[u8]) -> io::Result<()> {
    secure_fs::replace_private(file, contents)
}
