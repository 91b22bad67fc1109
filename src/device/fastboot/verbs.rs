//! The fastboot verbs a technician asks for by name: `getvar`, `oem`, `erase`, `boot`,
//! `flashing lock|unlock`, and how `--slot` picks the partitions they act on.
//!
//! A device's `FAIL` is an answer here, not an error: the verbs pass on what the device
//! said (its INFO/TEXT lines and its final word, as sent), and only a broken exchange is a
//! [`DeviceError`].

use std::time::Duration;

use super::FastbootDriver;
use crate::device::{DeviceError, ImageSource, ProgressFn};
use crate::protocol::fastboot::client::FastbootError;
use crate::transport::Transport;

/// How a command ended, in the device's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `OKAY` and its text.
    Okay(String),
    /// `FAIL` and the device's reason.
    Failed(String),
}

/// Everything the device said about one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The INFO/TEXT lines, in order, as sent (untrusted: escape before showing).
    pub lines: Vec<String>,
    /// The final answer.
    pub answer: Answer,
}

/// The verbs, for a device in fastboot mode.
pub trait FastbootVerbs {
    /// Sends a command without a data phase (`getvar:…`, `oem …`) and returns what the
    /// device said.
    fn send(&mut self, command: &str) -> Result<Reply, DeviceError>;

    /// [`FastbootVerbs::send`] for a command the device confirms with the person holding
    /// it (`flashing unlock` asks on the phone's screen): each message may take `limit`.
    fn send_waiting(&mut self, command: &str, limit: Duration) -> Result<Reply, DeviceError>;

    /// `erase:<partition>`, allowing the time writing `size` bytes takes.
    fn erase_partition(&mut self, partition: &str, size: Option<u64>)
        -> Result<Reply, DeviceError>;

    /// Downloads `image` in one piece, and sends `boot` only if exactly its signed bytes
    /// went out (the image is hashed on its way, as for `flash`).
    fn boot_image(
        &mut self,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<Reply, DeviceError>;
}

impl<T: Transport> FastbootDriver<T> {
    /// Turns a client result into the device's reply: a `FAIL` is an answer.
    fn reply(&mut self, result: Result<String, FastbootError>) -> Result<Reply, DeviceError> {
        let answer = match result {
            Ok(text) => Answer::Okay(text),
            Err(FastbootError::DeviceFailed { reason, .. }) => Answer::Failed(reason),
            Err(e) => return Err(e.into()),
        };
        Ok(Reply {
            lines: self.raw_messages(),
            answer,
        })
    }
}

impl<T: Transport> FastbootVerbs for FastbootDriver<T> {
    fn send(&mut self, command: &str) -> Result<Reply, DeviceError> {
        self.raw_messages();
        let result = self.client.raw(command);
        self.reply(result)
    }

    fn send_waiting(&mut self, command: &str, limit: Duration) -> Result<Reply, DeviceError> {
        self.raw_messages();
        let result = self.client.raw_waiting(command, limit);
        self.reply(result)
    }

    fn erase_partition(
        &mut self,
        partition: &str,
        size: Option<u64>,
    ) -> Result<Reply, DeviceError> {
        self.raw_messages();
        let result = self.client.erase(partition, size).map(|()| String::new());
        self.reply(result)
    }

    fn boot_image(
        &mut self,
        image: &dyn ImageSource,
        progress: &mut ProgressFn<'_>,
    ) -> Result<Reply, DeviceError> {
        let limit = self.download_limit()?;
        if image.is_sparse() {
            // `boot` runs a raw image from RAM; a package stores zero runs sparse.
            self.raw_messages();
            self.download_expanded("boot", image, limit, progress)?;
            let result = self.client.boot().map(|()| String::new());
            return self.reply(result);
        }
        if image.len() > limit {
            return Err(DeviceError::TooLarge(format!(
                "`boot` needs the whole {}-byte image in one download, and the device takes at \
                 most {limit} bytes (max-download-size)",
                image.len()
            )));
        }
        let len = u32::try_from(image.len())
            .map_err(|_| DeviceError::TooLarge("image too large for one download".into()))?;
        self.raw_messages();
        self.send_verified(len, image, progress)?;
        let result = self.client.boot().map(|()| String::new());
        self.reply(result)
    }
}

/// What `--slot` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotChoice {
    /// One slot by its letter.
    Slot(char),
    /// Every slot of the device.
    All,
    /// The slot after the current one (`a` → `b`), as Google's client counts.
    Other,
}

impl std::str::FromStr for SlotChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let letter = text.strip_prefix('_').unwrap_or(text);
        match letter {
            "all" => Ok(SlotChoice::All),
            "other" => Ok(SlotChoice::Other),
            _ => match letter.as_bytes() {
                [c] if c.is_ascii_lowercase() => Ok(SlotChoice::Slot(char::from(*c))),
                _ => Err(format!("{text:?} is no slot: use a, b, all or other")),
            },
        }
    }
}

impl std::fmt::Display for SlotChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlotChoice::Slot(c) => write!(f, "{c}"),
            SlotChoice::All => f.write_str("all"),
            SlotChoice::Other => f.write_str("other"),
        }
    }
}

/// What the device said about its slots and one partition's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotFacts {
    /// `slot-count` (0 or absent: no A/B).
    pub count: u32,
    /// `current-slot`, without an underscore.
    pub current: Option<char>,
    /// `has-slot:<partition>`: `Some(true)` for `yes`, `Some(false)` for `no`, `None` when
    /// the device did not answer.
    pub has_slot: Option<bool>,
}

/// Why `--slot` cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The device has no A/B slots.
    #[error("--slot {choice}: the device has no A/B slots (slot-count {count}); leave out --slot")]
    NoSlots {
        /// What was asked.
        choice: SlotChoice,
        /// `slot-count` as read.
        count: u32,
    },
    /// `other` on a device with one slot.
    #[error("--slot other: the device has only one slot, so there is no other one")]
    OnlyOne,
    /// The device did not say which slot it runs.
    #[error("the device does not report current-slot, so {0} cannot be resolved; name the slot (--slot a or b)")]
    NoCurrent(String),
    /// A letter past the device's slots.
    #[error("slot {letter} does not exist: the device has slots {slots}")]
    NoSuchSlot {
        /// What was asked.
        letter: char,
        /// The device's slots, `a`, `a, b`.
        slots: String,
    },
    /// A slot was asked for a partition the device keeps once.
    #[error("{partition} has no slots on this device (has-slot:{partition} is {answer}); leave out --slot")]
    Unslotted {
        /// The partition.
        partition: String,
        /// The device's answer (`no`, or `not answered`).
        answer: &'static str,
    },
}

/// The partition names a verb on `partition` acts on, as Google's client resolves them
/// (AOSP `fastboot.cpp`: `verify_slot`, `do_for_partitions`): without `--slot`, a slotted
/// partition means the current slot's and any other is used as named; a letter means that
/// slot; `other` the slot after the current one; `all` every slot.
///
/// Where Google's client goes on regardless, flashline stops with a clear error: `all` or a
/// slot on a device or partition without slots (Google's uses the plain name with at most a
/// warning), and `other` with a single slot (Google's wraps round to the current one).
pub fn resolve(
    partition: &str,
    choice: Option<SlotChoice>,
    facts: &SlotFacts,
) -> Result<Vec<String>, SlotError> {
    let count = facts.count.min(26);
    let suffixed = |slot: char| format!("{partition}_{slot}");
    let current = |what: &str| {
        facts
            .current
            .ok_or_else(|| SlotError::NoCurrent(what.to_string()))
    };
    let Some(choice) = choice else {
        return Ok(vec![if facts.has_slot == Some(true) && count >= 2 {
            suffixed(current(&format!("the slot of {partition}"))?)
        } else {
            partition.to_string()
        }]);
    };
    if count < 2 {
        return Err(match (choice, count) {
            (SlotChoice::Other, 1) => SlotError::OnlyOne,
            _ => SlotError::NoSlots {
                choice,
                count: facts.count,
            },
        });
    }
    if facts.has_slot != Some(true) {
        return Err(SlotError::Unslotted {
            partition: partition.to_string(),
            answer: if facts.has_slot == Some(false) {
                "no"
            } else {
                "not answered"
            },
        });
    }
    let letters: Vec<char> = (0..count as u8).map(|i| char::from(b'a' + i)).collect();
    match choice {
        SlotChoice::All => Ok(letters.into_iter().map(suffixed).collect()),
        SlotChoice::Other => {
            let now = current("--slot other")?;
            let index = letters
                .iter()
                .position(|&l| l == now)
                .ok_or(SlotError::NoSuchSlot {
                    letter: now,
                    slots: list(&letters),
                })?;
            Ok(vec![suffixed(letters[(index + 1) % letters.len()])])
        }
        SlotChoice::Slot(letter) if letters.contains(&letter) => Ok(vec![suffixed(letter)]),
        SlotChoice::Slot(letter) => Err(SlotError::NoSuchSlot {
            letter,
            slots: list(&letters),
        }),
    }
}

fn list(letters: &[char]) -> String {
    letters
        .iter()
        .map(char::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ab(current: char, has_slot: Option<bool>) -> SlotFacts {
        SlotFacts {
            count: 2,
            current: Some(current),
            has_slot,
        }
    }

    #[test]
    fn choices_parse() {
        assert_eq!("b".parse(), Ok(SlotChoice::Slot('b')));
        assert_eq!("_a".parse(), Ok(SlotChoice::Slot('a')));
        assert_eq!("all".parse(), Ok(SlotChoice::All));
        assert_eq!("other".parse(), Ok(SlotChoice::Other));
        assert!("B".parse::<SlotChoice>().is_err());
        assert!("ab".parse::<SlotChoice>().is_err());
    }

    #[test]
    fn slots_resolve_as_google_does() {
        let yes = ab('a', Some(true));
        assert_eq!(resolve("boot", None, &yes).unwrap(), ["boot_a"]);
        assert_eq!(
            resolve("boot", Some(SlotChoice::Other), &yes).unwrap(),
            ["boot_b"]
        );
        assert_eq!(
            resolve("boot", Some(SlotChoice::Other), &ab('b', Some(true))).unwrap(),
            ["boot_a"]
        );
        assert_eq!(
            resolve("boot", Some(SlotChoice::Slot('b')), &yes).unwrap(),
            ["boot_b"]
        );
        assert_eq!(
            resolve("boot", Some(SlotChoice::All), &yes).unwrap(),
            ["boot_a", "boot_b"]
        );
        assert_eq!(
            resolve("misc", None, &ab('a', Some(false))).unwrap(),
            ["misc"]
        );
        assert_eq!(
            resolve("boot", None, &SlotFacts::default()).unwrap(),
            ["boot"]
        );
    }

    #[test]
    fn impossible_slots_are_clear_errors() {
        let plain = SlotFacts::default();
        assert!(matches!(
            resolve("boot", Some(SlotChoice::All), &plain),
            Err(SlotError::NoSlots { count: 0, .. })
        ));
        let one = SlotFacts {
            count: 1,
            current: Some('a'),
            has_slot: Some(true),
        };
        assert_eq!(
            resolve("boot", Some(SlotChoice::Other), &one),
            Err(SlotError::OnlyOne)
        );
        assert!(matches!(
            resolve("boot", Some(SlotChoice::Slot('c')), &ab('a', Some(true))),
            Err(SlotError::NoSuchSlot { letter: 'c', .. })
        ));
        assert!(matches!(
            resolve("misc", Some(SlotChoice::All), &ab('a', Some(false))),
            Err(SlotError::Unslotted { answer: "no", .. })
        ));
        let unknown = SlotFacts {
            current: None,
            ..ab('a', Some(true))
        };
        assert!(matches!(
            resolve("boot", Some(SlotChoice::Other), &unknown),
            Err(SlotError::NoCurrent(_))
        ));
    }
}
