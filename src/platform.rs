//! What differs between the operating systems flashline runs on, in one place.
//!
//! Everything outside this module (and outside the simulators in [`crate::sim`], whose
//! serial devices need pseudo-terminals and are built on Unix only) is the same code on
//! Linux, macOS and Windows. A test (`tests/portability.rs`) keeps it that way: no other
//! module names `std::os::unix`, `nix` or `libc`. Where a Unix security measure (owner-only
//! modes, `O_NOFOLLOW`, refusing FIFOs, the root warning) has no Windows counterpart, the
//! function here says what Windows does instead.
//!
//! The facts are pure functions of an [`Os`] so that every platform's rule is tested on
//! whichever machine runs the tests; the `*_here` wrappers apply the rule of the platform
//! flashline was built for.

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io;
use std::ops::Range;
use std::path::Path;

/// The operating systems whose conventions differ here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    /// Linux and the other Unix systems with `/dev/pts`.
    Linux,
    /// macOS: BSD-style pseudo-terminals and two device nodes per serial port.
    MacOs,
    /// Windows: `COMn` ports, no pseudo-terminals.
    Windows,
}

impl Os {
    /// The platform this build runs on.
    pub const HERE: Os = if cfg!(target_os = "macos") {
        Os::MacOs
    } else if cfg!(windows) {
        Os::Windows
    } else {
        Os::Linux
    };
}

/// Whether `path` (already resolved: no `..`, no links) is a pseudo-terminal on `os`.
///
/// Only a pseudo-terminal can be one of flashline's virtual serial devices, so a bench file
/// naming a real tty does not make that device virtual. Linux has `/dev/pts/N`; macOS names
/// them `/dev/ttysNNN` (lower-case `s` and digits only: `/dev/tty.usbmodem1` is a real port).
pub fn is_pty_path(os: Os, path: &Path) -> bool {
    match os {
        Os::Linux => path.parent() == Some(Path::new("/dev/pts")),
        Os::MacOs => {
            path.parent() == Some(Path::new("/dev"))
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("ttys"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
        Os::Windows => false,
    }
}

/// Whether the serial port at `path` is a pseudo-terminal on this platform.
pub fn is_pseudo_terminal_here(path: &Path) -> bool {
    std::fs::canonicalize(path).is_ok_and(|p| is_pty_path(Os::HERE, &p))
}

/// Drops the second name of each serial port on `os`, keeping the order of the rest.
///
/// macOS lists every serial port twice: `/dev/cu.NAME` (call-out: opening it does not wait
/// for carrier detect) and `/dev/tty.NAME` (dial-in: opening it blocks until the modem
/// raises DCD). One device must be one row, and the one to open is `cu.`: a `tty.` port is
/// kept only when its `cu.` twin is missing. Other systems name each port once.
pub fn dedupe_ports<T>(os: Os, ports: Vec<T>, path: impl Fn(&T) -> &str) -> Vec<T> {
    if os != Os::MacOs {
        return ports;
    }
    let names: Vec<String> = ports.iter().map(|p| path(p).to_string()).collect();
    ports
        .into_iter()
        .zip(&names)
        .filter(|(_, name)| match name.strip_prefix("/dev/tty.") {
            Some(rest) => !names.iter().any(|n| *n == format!("/dev/cu.{rest}")),
            None => true,
        })
        .map(|(p, _)| p)
        .collect()
}

/// Whether two metadata records are of the very same file (not a copy, not a file put in
/// its place), where the platform can tell; `None` where it cannot.
///
/// Unix compares device and inode. Windows' file index needs an unstable API, so there
/// only size and modification time (compared by the caller) speak.
pub fn same_file(a: &Metadata, b: &Metadata) -> Option<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(a.dev() == b.dev() && a.ino() == b.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        None
    }
}

/// Whether users other than the owner may read the file, by its Unix mode bits. Windows
/// has no mode bits: a file there gets the access list of the folder it is in (the user's
/// profile for flashline's home), so this says `false`.
pub fn others_may_read(meta: &Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o077 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

/// Owner, group and permission bits of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    /// Owning user id.
    pub uid: u32,
    /// Owning group id.
    pub gid: u32,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
}

/// Who owns a file and with which mode, where the platform has Unix ownership.
pub fn ownership(meta: &Metadata) -> Option<Ownership> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Some(Ownership {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        })
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        None
    }
}

/// This process's user id and every group it is in (the primary group first), where the
/// platform has them.
///
/// macOS gives the primary group only: group membership there lives in opendirectoryd, not
/// in getgroups(2) (nix leaves that call out on Apple systems), and macOS grants access to
/// USB devices without group membership, so no check needs the rest.
pub fn current_user() -> Option<(u32, Vec<u32>)> {
    #[cfg(unix)]
    {
        let primary = nix::unistd::getegid().as_raw();
        #[cfg_attr(target_os = "macos", allow(unused_mut))]
        let mut gids = vec![primary];
        #[cfg(not(target_os = "macos"))]
        for g in nix::unistd::getgroups().unwrap_or_default() {
            if !gids.contains(&g.as_raw()) {
                gids.push(g.as_raw());
            }
        }
        Some((nix::unistd::geteuid().as_raw(), gids))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Whether this process may open `path` for reading and writing, by the kernel's own
/// check (access(2)), which also honours ACLs such as the ones udev's `uaccess` grants;
/// `None` where the platform has no such check.
pub fn may_read_write(path: &Path) -> Option<bool> {
    #[cfg(unix)]
    {
        use nix::unistd::AccessFlags;
        Some(nix::unistd::access(path, AccessFlags::R_OK | AccessFlags::W_OK).is_ok())
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Makes the folders `builder` creates private to this user.
///
/// Unix: mode 0700. Windows has no mode bits: a folder created under the user's profile
/// (where flashline's home is) inherits the profile's ACL, which admits only that user,
/// SYSTEM and Administrators, so nothing is set here.
pub fn private_dir_mode(builder: &mut DirBuilder) -> &mut DirBuilder {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
}

/// Sets the Unix permission bits of the file `options` creates.
///
/// Windows has no mode bits: a new file inherits the ACL of its folder, so a secret file is
/// as private as the folder it is put in (the user's profile admits only that user, SYSTEM
/// and Administrators); nothing is set here.
pub fn create_mode(options: &mut OpenOptions, mode: u32) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    options
}

/// The `block`-aligned ranges of the first `len` bytes of `file` that hold data, from
/// `SEEK_DATA`/`SEEK_HOLE` on Linux (a tool that wrote a filesystem image left the rest as
/// holes). Where holes cannot be told apart, the whole file.
pub fn data_ranges(file: &File, len: u64, block: u64) -> io::Result<Vec<Range<u64>>> {
    #[cfg(target_os = "linux")]
    {
        use nix::unistd::{lseek, Whence};
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        let mut ranges: Vec<Range<u64>> = Vec::new();
        let mut at = 0u64;
        while at < len {
            let start = match lseek(fd, at as i64, Whence::SeekData) {
                Ok(start) => start as u64,
                Err(nix::errno::Errno::ENXIO) => break,
                Err(e) => return Err(e.into()),
            };
            let end = lseek(fd, start as i64, Whence::SeekHole)? as u64;
            let range = (start / block * block)..end.div_ceil(block).saturating_mul(block).min(len);
            match ranges.last_mut() {
                Some(last) if last.end >= range.start => last.end = last.end.max(range.end),
                _ if range.start < range.end => ranges.push(range),
                _ => {}
            }
            at = end.max(start + 1);
        }
        Ok(ranges)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (file, block);
        Ok(vec![0..len])
    }
}

/// A flag raised by the first Ctrl-C or SIGTERM (`on_first` runs then); a second one
/// quits at once (exit status 130). Call it before any thread starts: on Unix the signals
/// are blocked in the calling thread, which every thread started later inherits, and one
/// thread waits for them. Elsewhere Ctrl-C ends the process as usual.
pub fn stop_requests(
    on_first: impl FnOnce() + Send + 'static,
) -> io::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stopped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    #[cfg(unix)]
    {
        use nix::sys::signal::{SigSet, Signal};
        let mut signals = SigSet::empty();
        signals.add(Signal::SIGINT);
        signals.add(Signal::SIGTERM);
        signals.thread_block().map_err(io::Error::from)?;
        let flag = std::sync::Arc::clone(&stopped);
        std::thread::Builder::new()
            .name("stop-signal".into())
            .spawn(move || {
                if signals.wait().is_ok() {
                    on_first();
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                if signals.wait().is_ok() {
                    std::process::exit(130);
                }
            })?;
    }
    #[cfg(not(unix))]
    drop(on_first);
    Ok(stopped)
}

/// One positional read (`pread` on Unix, `seek_read` on Windows): the offset is part of
/// the call, so several readers can share one handle. (`seek_read` also moves the handle's
/// cursor; nothing in flashline reads from the cursor.) May return fewer bytes than asked, 0 at end of
/// file, or `Interrupted`.
pub fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    #[cfg(unix)]
    return std::os::unix::fs::FileExt::read_at(file, buf, offset);
    #[cfg(windows)]
    return std::os::windows::fs::FileExt::seek_read(file, buf, offset);
}

/// Open options for flashline's private files: never follow a symbolic link at the path
/// itself, never wait on a FIFO, create owner-only.
///
/// Unix: `O_NOFOLLOW | O_NONBLOCK` (non-blocking changes nothing for regular files) and
/// mode 0600. Windows: `FILE_FLAG_OPEN_REPARSE_POINT`, so a symbolic link or junction at
/// the path is opened itself, not its target, and the caller's regular-file check refuses
/// it; Windows has no FIFOs in the file system (named pipes live under `\\.\pipe\`), and a
/// file created under the user's profile is private by ACL inheritance.
pub fn private_open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    create_mode(&mut options, 0o600);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK);
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_FLAG_OPEN_REPARSE_POINT: u32 = 0x0020_0000;
        options.custom_flags(FILE_FLAG_OPEN_REPARSE_POINT);
    }
    options
}

/// Opens `path` read-only without waiting for a writer, then makes reads blocking again.
///
/// Unix: a FIFO (or a device) put where a file was expected would stall a plain `open()`
/// until someone writes; `O_NONBLOCK` returns at once and the caller refuses anything that
/// is not a regular file. Windows: the file is opened sharing reads only, so no other
/// process writes it while flashline reads it; nothing there blocks in `open()`, because
/// named pipes are not in the file system (the caller checks for a regular file first).
pub fn open_read_only_no_wait(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(windows)]
    {
        use std::os::windows::fs::OpenOptionsExt;
        const FILE_SHARE_READ: u32 = 0x1;
        options.share_mode(FILE_SHARE_READ);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(nix::libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    #[cfg(unix)]
    {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK))?;
    }
    Ok(file)
}

/// Makes `path` a symbolic link to `original` (tests of the link checks).
///
/// Windows distinguishes file and folder links, and creating one needs Developer Mode or
/// the symbolic-link privilege.
#[cfg(test)]
pub(crate) fn symlink(original: impl AsRef<Path>, link: impl AsRef<Path>) -> io::Result<()> {
    let (original, link) = (original.as_ref(), link.as_ref());
    #[cfg(unix)]
    return std::os::unix::fs::symlink(original, link);
    #[cfg(windows)]
    return if original.is_dir() {
        std::os::windows::fs::symlink_dir(original, link)
    } else {
        std::os::windows::fs::symlink_file(original, link)
    };
}

/// Sets the Unix permission bits of `path` (tests of the mode checks).
#[cfg(all(test, unix))]
pub(crate) fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_terminals_are_named_per_platform() {
        let p = Path::new;
        assert!(is_pty_path(Os::Linux, p("/dev/pts/7")));
        assert!(!is_pty_path(Os::Linux, p("/dev/ttyUSB0")));
        assert!(!is_pty_path(Os::Linux, p("/dev/ttys004")));
        assert!(is_pty_path(Os::MacOs, p("/dev/ttys004")));
        assert!(!is_pty_path(Os::MacOs, p("/dev/ttys")));
        assert!(!is_pty_path(Os::MacOs, p("/dev/tty.usbmodem14101")));
        assert!(!is_pty_path(Os::MacOs, p("/dev/cu.usbmodem14101")));
        assert!(!is_pty_path(Os::MacOs, p("/dev/pts/7")));
        assert!(!is_pty_path(Os::Windows, p("COM3")));
    }

    #[test]
    fn macos_lists_each_port_once_by_its_call_out_name() {
        let listed = vec![
            "/dev/cu.usbmodem14101",
            "/dev/tty.usbmodem14101",
            "/dev/tty.Bluetooth-Incoming-Port",
            "/dev/cu.Bluetooth-Incoming-Port",
            "/dev/tty.only-dial-in",
            "/dev/cu.usbserial-A1",
        ];
        let kept = dedupe_ports(Os::MacOs, listed.clone(), |p| p);
        assert_eq!(
            kept,
            vec![
                "/dev/cu.usbmodem14101",
                "/dev/cu.Bluetooth-Incoming-Port",
                "/dev/tty.only-dial-in",
                "/dev/cu.usbserial-A1",
            ]
        );
        // Elsewhere both names are distinct ports and stay.
        assert_eq!(dedupe_ports(Os::Linux, listed.clone(), |p| p), listed);
    }

    #[test]
    fn a_file_is_itself_and_not_its_copy() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"x").unwrap();
        std::fs::write(&b, b"x").unwrap();
        let meta = |p: &Path| std::fs::metadata(p).unwrap();
        if let Some(same) = same_file(&meta(&a), &meta(&a)) {
            assert!(same);
            assert_eq!(same_file(&meta(&a), &meta(&b)), Some(false));
        }
    }
}
