//! The phone's answers to the commands outside fastboot's core set: `oem device-info`,
//! `flashing lock|unlock` and `boot`. Worded as a Qualcomm ABL words them.
//!
//! * `oem device-info` answers with INFO lines and an empty OKAY, in ABL's wording
//!   (`CmdOemDevinfo` in QcomModulePkg/Application/FastbootApp/FastbootCmds.c; public
//!   transcripts: `(bootloader) Device unlocked: true`, `(bootloader) Device critical
//!   unlocked: false`, `(bootloader) Charger screen enabled: false`). Any other `oem`
//!   command is unknown to it.
//! * `flashing unlock` / `flashing lock` wipe user data (the `userdata` and `metadata`
//!   partitions, where the phone has them, are zeroed) and change `unlocked`; a real phone
//!   asks on its screen first, the virtual one takes the command as confirmed. Asked for
//!   the state it already has, it fails as ABL does (`Device already : unlocked!`, seen in
//!   public transcripts as `FAILED (remote: 'Device already : unlocked!')`).
//! * `boot` runs the last download from RAM: a locked phone refuses (`unlock device to use
//!   this command`, as a locked Fairphone 3 answered in
//!   forum.fairphone.com/t/device-stuck-in-fastboot-mode-after-oem-re-locking/57428);
//!   otherwise it keeps a copy of the image ([`super::super::storage::BOOTED_FILE`]),
//!   answers OKAY and leaves: it is away for [`super::BOOT_TIME`] and then back in
//!   fastboot, storage unchanged.

use std::io;
use std::time::Instant;

use super::{Bootloader, Flow};
use crate::protocol::fastboot::Response;
use crate::sim::phone::link::Link;

/// What user data is on a phone: wiped by every change of the lock state.
const USER_DATA: &[&str] = &["userdata", "metadata"];

impl Bootloader {
    /// Answers a command the core set does not name.
    pub(super) fn other(&mut self, command: &str, link: &mut Link) -> io::Result<Flow> {
        let response = match command {
            "oem device-info" => {
                let yes = |b: bool| if b { "true" } else { "false" };
                for line in [
                    "Verity mode: true".to_string(),
                    format!("Device unlocked: {}", yes(!self.cfg.locked)),
                    "Device critical unlocked: false".to_string(),
                    "Charger screen enabled: false".to_string(),
                ] {
                    link.send(&Response::Info(line))?;
                }
                Response::Okay(String::new())
            }
            "flashing unlock" => self.set_lock(false),
            "flashing lock" => self.set_lock(true),
            "boot" => return self.boot_download(link),
            _ => Response::Fail("unknown command".into()),
        };
        link.send(&response)?;
        Ok(Flow::Next)
    }

    /// Changes the lock state, wiping user data first, as every lock change must.
    fn set_lock(&mut self, locked: bool) -> Response {
        if self.cfg.locked == locked {
            let state = if locked { "locked" } else { "unlocked" };
            return Response::Fail(format!("Device already : {state}!"));
        }
        for name in USER_DATA {
            let Some(part) = self.storage.get(name).cloned() else {
                continue;
            };
            let started = Instant::now();
            if let Err(e) = self.storage.erase(&part) {
                return Response::Fail(format!("wiping {name} failed: {e}"));
            }
            self.take_write_time(started, part.size);
        }
        self.cfg.locked = locked;
        Response::Okay(String::new())
    }

    /// `boot`: runs the download from RAM (see the module documentation).
    fn boot_download(&mut self, link: &mut Link) -> io::Result<Flow> {
        if self.cfg.locked {
            link.send(&Response::Fail("unlock device to use this command".into()))?;
            return Ok(Flow::Next);
        }
        if self.download.is_none() {
            link.send(&Response::Fail(
                "no image downloaded: send download first".into(),
            ))?;
            return Ok(Flow::Next);
        }
        if let Err(e) = self.storage.keep_booted() {
            link.send(&Response::Fail(format!("cannot boot the download: {e}")))?;
            return Ok(Flow::Next);
        }
        link.send(&Response::Okay(String::new()))?;
        self.download = None;
        self.away_until = Some(Instant::now() + super::BOOT_TIME);
        Ok(Flow::Close)
    }
}
