//! A phone that answers `getvar` exactly as a real device did, from its `getvar all`
//! transcript (`flashline sim phone --replay FILE`).
//!
//! A transcript is what `fastboot getvar all` printed on the owner's screen: each
//! `(bootloader) TEXT` line is one INFO message the device sent, and `all: TEXT` is the
//! text of its final OKAY. Everything else (prompts, `Finished.`, a poster's `...`) is the
//! host's or the poster's and is ignored, as are blanks a paste put before `(bootloader)`.
//! The phone sends the same messages in the same order for `getvar:all`, answers a single
//! `getvar:NAME` with the value the device listed for NAME (split values joined), FAILs
//! for names it did not list, and has one partition per size it listed.

use std::io;
use std::path::Path;

use crate::protocol::fastboot::vars::{parse_size, split_variable, yes_no, Variables};
use crate::protocol::fastboot::MAX_RESPONSE_LEN;

use super::storage;

/// The INFO prefix Google's client prints before a device's text.
const INFO_PREFIX: &str = "(bootloader)";
/// How Google's client prints the final OKAY of `getvar all`.
const FINAL_PREFIX: &str = "all:";
/// Largest transcript read; real ones are well under 100 KiB.
const MAX_TRANSCRIPT: u64 = 4 * 1024 * 1024;

/// One device's recorded answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// The INFO messages of `getvar all`, as sent.
    listing: Vec<String>,
    /// The text of the final OKAY of `getvar all`.
    last: String,
    /// The variables, as the device's listing defines them.
    vars: Variables,
}

/// Why a transcript cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// No `(bootloader)` line at all.
    #[error("no `(bootloader) …` line: this is not a `fastboot getvar all` transcript")]
    Empty,
    /// A line longer than one fastboot message can carry.
    #[error("line {line} holds {len} bytes, more than one fastboot message can carry")]
    TooLong {
        /// 1-based line number.
        line: usize,
        /// Message length with its status.
        len: usize,
    },
    /// The file is larger than any transcript.
    #[error("{0} bytes is too large for a getvar transcript")]
    TooLarge(u64),
    /// The file could not be read.
    #[error("cannot read the transcript: {0}")]
    Io(#[from] io::Error),
}

impl Transcript {
    /// Reads a transcript file.
    pub fn load(path: &Path) -> Result<Self, TranscriptError> {
        let len = std::fs::metadata(path)?.len();
        if len > MAX_TRANSCRIPT {
            return Err(TranscriptError::TooLarge(len));
        }
        Self::parse(&String::from_utf8_lossy(&std::fs::read(path)?))
    }

    /// Reads a transcript's text.
    pub fn parse(text: &str) -> Result<Self, TranscriptError> {
        let mut listing = Vec::new();
        let mut last = String::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_start().trim_end_matches('\r');
            let message = if let Some(info) = line.strip_prefix(INFO_PREFIX) {
                // Google's client puts one blank between the prefix and the device's text.
                let info = info.strip_prefix(' ').unwrap_or(info);
                listing.push(info.to_string());
                info
            } else if let Some(okay) = line.strip_prefix(FINAL_PREFIX) {
                last = okay.trim_start().to_string();
                &last
            } else {
                continue;
            };
            let len = message.len() + 4;
            if len > MAX_RESPONSE_LEN {
                return Err(TranscriptError::TooLong {
                    line: index + 1,
                    len,
                });
            }
        }
        if listing.is_empty() {
            return Err(TranscriptError::Empty);
        }
        let vars = Variables::new(
            listing
                .iter()
                .chain(std::iter::once(&last))
                .filter_map(|line| split_variable(line)),
        );
        Ok(Transcript {
            listing,
            last,
            vars,
        })
    }

    /// The INFO messages of `getvar all`, in the device's order.
    pub fn listing(&self) -> &[String] {
        &self.listing
    }

    /// The text the device sent with the final OKAY of `getvar all`.
    pub fn final_okay(&self) -> &str {
        &self.last
    }

    /// The answer to `getvar:NAME`; `None` for a name the device did not list (FAIL).
    pub fn answer(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(str::to_string)
    }

    /// The partitions to give the phone: every listed size above zero, under a name that
    /// can be a file name, read in the device's number style.
    pub fn partitions(&self) -> Vec<(String, u64)> {
        self.vars
            .partitions()
            .0
            .into_iter()
            .filter(|(name, size)| *size > 0 && storage::is_valid_name(name))
            .collect()
    }

    /// Index of the slot the device was running (`0` for `a`, `1` for `b`), if it has A/B
    /// slots: a `current-slot` of `a`/`b` (or `_a`/`_b`), else a `slot-count` of 2 or more,
    /// which starts it on `a`. The phone then switches slots as a real one does on
    /// `set_active`, its partitions keeping the `_a`/`_b` names the device listed.
    pub fn current_slot(&self) -> Option<usize> {
        let current = self.vars.get("current-slot").map(str::trim);
        match current.map(|c| c.strip_prefix('_').unwrap_or(c)) {
            Some("a") => Some(0),
            Some("b") => Some(1),
            _ => {
                let count = self.vars.get("slot-count")?.trim().parse::<u32>().ok()?;
                (count >= 2).then_some(0)
            }
        }
    }

    /// Whether the device said its bootloader is locked (`unlocked: no`): the phone then
    /// refuses writes as a locked bootloader does.
    pub fn locked(&self) -> bool {
        self.vars.get("unlocked").and_then(yes_no) == Some(false)
    }

    /// The device's download limit, if it listed one that fits a download command
    /// (`max-download-size`, or older U-Boot's `downloadsize`).
    pub fn max_download_size(&self) -> Option<u32> {
        let value = self
            .vars
            .get("max-download-size")
            .or_else(|| self.vars.get("downloadsize"))?;
        let size = parse_size(value, self.vars.number_style())?;
        u32::try_from(size).ok().filter(|s| *s > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_lines_are_ignored_and_device_lines_kept_as_sent() {
        let t = Transcript::parse(
            "$ fastboot getvar all\n\
             (bootloader) max-download-size: 0x8000000\n\
             \x20 (bootloader) logical-block-size: 0x200\n\
             (bootloader)  version-preloader:\n\
             (bootloader) partition-size:sgpt: 4200\n\
             (bootloader) partition-size:userdata: d416fbe00\n\
             (bootloader) partition-size:empty_b:0\n\
             all: Done!!\n\
             Finished. Total time: 0.008s\n",
        )
        .unwrap();
        assert_eq!(
            t.listing(),
            [
                "max-download-size: 0x8000000",
                "logical-block-size: 0x200",
                " version-preloader:",
                "partition-size:sgpt: 4200",
                "partition-size:userdata: d416fbe00",
                "partition-size:empty_b:0",
            ]
        );
        assert_eq!(t.final_okay(), "Done!!");
        assert_eq!(
            t.answer("partition-size:userdata").as_deref(),
            Some("d416fbe00")
        );
        assert_eq!(t.answer("version-preloader").as_deref(), Some(""));
        assert_eq!(t.answer("product"), None);
        assert_eq!(
            t.partitions(),
            [
                ("sgpt".to_string(), 0x4200),
                ("userdata".to_string(), 0xd_416f_be00)
            ]
        );
        assert_eq!(t.max_download_size(), Some(0x800_0000));
        assert_eq!(t.current_slot(), None);
        assert!(!t.locked());
    }

    #[test]
    fn slots_and_lock_state_are_read_as_listed() {
        let t =
            Transcript::parse("(bootloader) current-slot:_b\n(bootloader) unlocked: no\n").unwrap();
        assert_eq!(t.current_slot(), Some(1));
        assert!(t.locked());
        let t = Transcript::parse("(bootloader)    slot-count: 2\n(bootloader) unlocked:yes\n")
            .unwrap();
        assert_eq!(t.current_slot(), Some(0));
        assert!(!t.locked());
        let t =
            Transcript::parse("(bootloader) current-slot:\n(bootloader) slot-count:0\n").unwrap();
        assert_eq!(t.current_slot(), None);
    }

    #[test]
    fn a_variable_carried_by_the_final_okay_is_answered() {
        let t = Transcript::parse("(bootloader) product:p\nall: unlocked:yes\n").unwrap();
        assert_eq!(t.final_okay(), "unlocked:yes");
        assert_eq!(t.answer("unlocked").as_deref(), Some("yes"));
    }

    #[test]
    fn what_is_not_a_transcript_is_refused() {
        assert!(matches!(
            Transcript::parse("hello\n"),
            Err(TranscriptError::Empty)
        ));
        let long = format!("(bootloader) x:{}\n", "y".repeat(300));
        assert!(matches!(
            Transcript::parse(&long),
            Err(TranscriptError::TooLong { line: 1, .. })
        ));
    }
}
