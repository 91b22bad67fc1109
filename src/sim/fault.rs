//! Fault plans: the ways a virtual device misbehaves on purpose, the way real hardware does.
//!
//! A yanked cable, a power cut in the middle of a write, a bootloader that refuses or
//! never answers one command, a corrupted answer, a battery that runs down during a long
//! flash, a device that reboots into another mode on its own: a flasher is only trusted
//! once it survives all of them, and tests can only prove that with a device that
//! misbehaves deterministically. Every simulator takes a [`FaultPlan`]; each fault in it
//! fires once (a pulled cable is one event), after which the device behaves normally
//! again, so a re-run job can complete.
//!
//! Faults are triggered by counts, never by clocks or randomness: command faults by the
//! n-th command whose text starts with a prefix, the others by payload bytes counted over
//! the whole life of the simulator. Each simulator's module says what its commands look
//! like and what counts as a payload byte there.
//!
//! Each fault has a textual form, for `flashline sim … --fault`:
//!
//! | Fault | Text |
//! |---|---|
//! | [`Fault::Disconnect`] | `disconnect@bytes=N` |
//! | [`Fault::PowerLoss`] | `power-loss@bytes=N` |
//! | [`Fault::Fail`] | `fail@COMMAND#N` |
//! | [`Fault::Stall`] | `stall@COMMAND#N` |
//! | [`Fault::Garbage`] | `garbage@COMMAND#N` |
//! | [`Fault::BatteryDrop`] | `battery@bytes=N,percent=P` |
//! | [`Fault::Reenumerate`] | `reenumerate@COMMAND#N` |
//! | [`Fault::Drop`] | `drop@COMMAND#N` (the phone only) |
//! | [`Fault::Corrupt`] | `corrupt@bytes=N` |
//!
//! `N` after `bytes=` may carry a `K`, `M` or `G` suffix (powers of 1024); `#N` counts
//! matching commands from 1 and is split off at the last `#`, so the command itself may
//! contain `#`. An empty command matches every command.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

/// The faults one simulator injects, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// Each fault fires at most once.
    pub faults: Vec<Fault>,
}

/// One way the device misbehaves, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The link drops once `after_bytes` payload bytes have been received (counted over the
    /// life of the simulator); the device then comes back at the same address. Storage
    /// keeps what was committed before.
    Disconnect {
        /// Payload bytes received before the drop.
        after_bytes: u64,
    },
    /// Power is cut once `after_bytes` payload bytes have been written into storage: the
    /// partition keeps exactly the bytes written so far, the link drops and the device
    /// boots again.
    PowerLoss {
        /// Payload bytes written into storage before the cut.
        after_bytes: u64,
    },
    /// The `nth` command whose text starts with `command` is refused (fastboot `FAIL`,
    /// Firehose NAK, AT `ERROR`) and has no effect.
    Fail {
        /// Prefix of the command text.
        command: String,
        /// Which matching command, from 1.
        nth: u32,
    },
    /// The `nth` matching command is never answered and has no effect; the link stays open.
    Stall {
        /// Prefix of the command text.
        command: String,
        /// Which matching command, from 1.
        nth: u32,
    },
    /// The `nth` matching command is answered with [`GARBAGE_LEN`] bytes that are no valid
    /// answer, and has no effect.
    Garbage {
        /// Prefix of the command text.
        command: String,
        /// Which matching command, from 1.
        nth: u32,
    },
    /// From `after_bytes` payload bytes received on, the battery reads `percent` (and
    /// stays there: a battery does not recharge by itself).
    BatteryDrop {
        /// Payload bytes received before the drop.
        after_bytes: u64,
        /// The charge reported from then on.
        percent: u8,
    },
    /// At the `nth` matching command the device leaves, without answering, and comes back
    /// in another mode (the phone boots its OS and returns to fastboot, a modem
    /// re-enumerates into EDL, an EDL device restarts in its boot ROM).
    Reenumerate {
        /// Prefix of the command text.
        command: String,
        /// Which matching command, from 1.
        nth: u32,
    },
    /// The link is lost as the `nth` matching command arrives: no answer, the command has
    /// no effect, and the device comes back at once in the mode it was in, storage as
    /// committed before (over USB it re-enumerates). Unlike [`Fault::Disconnect`] it is
    /// aimed at a command, not at a byte of download data; unlike
    /// [`Fault::Reenumerate`] the device does not change mode.
    Drop {
        /// Prefix of the command text.
        command: String,
        /// Which matching command, from 1.
        nth: u32,
    },
    /// Line noise: one bit of the payload byte that follows the first `after_bytes` flips
    /// on its way in, and the device stores (and checksums) the flipped byte. Only
    /// simulators whose protocol checks payloads with a checksum carry it out (ZXIC); the
    /// others refuse it, since a flip their protocol cannot see would prove nothing.
    Corrupt {
        /// Payload bytes received intact before the flipped one.
        after_bytes: u64,
    },
}

/// Length of a [`Fault::Garbage`] answer.
pub const GARBAGE_LEN: usize = 64;

impl FaultPlan {
    /// A plan that injects nothing.
    pub fn none() -> FaultPlan {
        FaultPlan::default()
    }

    /// Whether the plan injects nothing.
    pub fn is_empty(&self) -> bool {
        self.faults.is_empty()
    }

    /// Checks the values a parser would have refused (a plan may be built in code) and asks
    /// `unsupported` whether `device` can misbehave that way at all; it returns why not.
    pub(crate) fn check(
        &self,
        device: &'static str,
        unsupported: impl Fn(&Fault) -> Option<&'static str>,
    ) -> Result<(), FaultPlanError> {
        for fault in &self.faults {
            let nth = match fault {
                Fault::Fail { nth, .. }
                | Fault::Stall { nth, .. }
                | Fault::Garbage { nth, .. }
                | Fault::Reenumerate { nth, .. }
                | Fault::Drop { nth, .. } => Some(*nth),
                _ => None,
            };
            if nth == Some(0) {
                return Err(FaultPlanError::ZeroCount(fault.to_string()));
            }
            if let Fault::BatteryDrop { percent, .. } = fault {
                if *percent > 100 {
                    return Err(FaultPlanError::BadPercent(fault.to_string()));
                }
            }
            if let Some(reason) = unsupported(fault) {
                return Err(FaultPlanError::Unsupported {
                    fault: fault.to_string(),
                    device,
                    reason,
                });
            }
        }
        Ok(())
    }
}

impl From<Vec<Fault>> for FaultPlan {
    fn from(faults: Vec<Fault>) -> Self {
        FaultPlan { faults }
    }
}

impl FromIterator<Fault> for FaultPlan {
    fn from_iter<I: IntoIterator<Item = Fault>>(iter: I) -> Self {
        FaultPlan {
            faults: iter.into_iter().collect(),
        }
    }
}

/// Why a simulator refused its fault plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultPlanError {
    /// `nth` of 0: counts start at 1.
    #[error("fault {0}: commands are counted from 1, so #0 never fires")]
    ZeroCount(String),
    /// A battery charge above 100 %.
    #[error("fault {0}: a battery charge is at most 100 %")]
    BadPercent(String),
    /// The device cannot misbehave this way.
    #[error("fault {fault} does not apply: {device} {reason}")]
    Unsupported {
        /// The fault, in its textual form.
        fault: String,
        /// The simulator.
        device: &'static str,
        /// What it lacks.
        reason: &'static str,
    },
}

/// Why a textual fault could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultSpecError {
    /// No `@` between kind and arguments.
    #[error(
        "fault {0:?} has no '@': write KIND@ARGUMENTS, e.g. fail@flash:boot#1 or \
         disconnect@bytes=1M"
    )]
    NoKind(String),
    /// A kind that does not exist.
    #[error(
        "unknown fault kind {0:?}: use disconnect, power-loss, fail, stall, garbage, battery, \
         reenumerate, drop or corrupt"
    )]
    UnknownKind(String),
    /// The arguments do not have the form the kind needs.
    #[error("fault {spec:?}: expected {expected}")]
    BadArguments {
        /// The whole text.
        spec: String,
        /// The form that was expected.
        expected: &'static str,
    },
    /// A number that does not parse or does not fit.
    #[error("fault {spec:?}: {text:?} is not a valid {what}")]
    BadNumber {
        /// The whole text.
        spec: String,
        /// The offending part.
        text: String,
        /// What it should have been.
        what: &'static str,
    },
}

const COMMAND_FORM: &str = "COMMAND#N with N counting matching commands from 1, e.g. flash:boot#1";
const BYTES_FORM: &str = "bytes=N (N may end in K, M or G), e.g. bytes=1048576";
const BATTERY_FORM: &str = "bytes=N,percent=P with P from 0 to 100, e.g. bytes=4M,percent=5";

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Disconnect { after_bytes } => write!(f, "disconnect@bytes={after_bytes}"),
            Fault::PowerLoss { after_bytes } => write!(f, "power-loss@bytes={after_bytes}"),
            Fault::Fail { command, nth } => write!(f, "fail@{command}#{nth}"),
            Fault::Stall { command, nth } => write!(f, "stall@{command}#{nth}"),
            Fault::Garbage { command, nth } => write!(f, "garbage@{command}#{nth}"),
            Fault::BatteryDrop {
                after_bytes,
                percent,
            } => write!(f, "battery@bytes={after_bytes},percent={percent}"),
            Fault::Reenumerate { command, nth } => write!(f, "reenumerate@{command}#{nth}"),
            Fault::Drop { command, nth } => write!(f, "drop@{command}#{nth}"),
            Fault::Corrupt { after_bytes } => write!(f, "corrupt@bytes={after_bytes}"),
        }
    }
}

impl FromStr for Fault {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Fault, FaultSpecError> {
        let (kind, args) = spec
            .split_once('@')
            .ok_or_else(|| FaultSpecError::NoKind(spec.to_string()))?;
        let bad = |expected| FaultSpecError::BadArguments {
            spec: spec.to_string(),
            expected,
        };
        let command = || -> Result<(String, u32), FaultSpecError> {
            let (command, nth) = args.rsplit_once('#').ok_or_else(|| bad(COMMAND_FORM))?;
            let nth = nth
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| number_error(spec, nth, "command count (1 or more)"))?;
            Ok((command.to_string(), nth))
        };
        let bytes =
            |text: &str| parse_bytes(text).ok_or_else(|| number_error(spec, text, "byte count"));
        Ok(match kind {
            "disconnect" | "power-loss" | "corrupt" => {
                let value = args.strip_prefix("bytes=").ok_or_else(|| bad(BYTES_FORM))?;
                let after_bytes = bytes(value)?;
                match kind {
                    "disconnect" => Fault::Disconnect { after_bytes },
                    "power-loss" => Fault::PowerLoss { after_bytes },
                    _ => Fault::Corrupt { after_bytes },
                }
            }
            "battery" => {
                let (mut after_bytes, mut percent) = (None, None);
                for pair in args.split(',') {
                    match pair.split_once('=') {
                        Some(("bytes", value)) if after_bytes.is_none() => {
                            after_bytes = Some(bytes(value)?);
                        }
                        Some(("percent", value)) if percent.is_none() => {
                            let p =
                                value.parse::<u8>().ok().filter(|&p| p <= 100).ok_or_else(
                                    || number_error(spec, value, "percentage (0-100)"),
                                )?;
                            percent = Some(p);
                        }
                        _ => return Err(bad(BATTERY_FORM)),
                    }
                }
                match (after_bytes, percent) {
                    (Some(after_bytes), Some(percent)) => Fault::BatteryDrop {
                        after_bytes,
                        percent,
                    },
                    _ => return Err(bad(BATTERY_FORM)),
                }
            }
            "fail" | "stall" | "garbage" | "reenumerate" | "drop" => {
                let (command, nth) = command()?;
                match kind {
                    "fail" => Fault::Fail { command, nth },
                    "stall" => Fault::Stall { command, nth },
                    "garbage" => Fault::Garbage { command, nth },
                    "drop" => Fault::Drop { command, nth },
                    _ => Fault::Reenumerate { command, nth },
                }
            }
            _ => return Err(FaultSpecError::UnknownKind(kind.to_string())),
        })
    }
}

fn number_error(spec: &str, text: &str, what: &'static str) -> FaultSpecError {
    FaultSpecError::BadNumber {
        spec: spec.to_string(),
        text: text.to_string(),
        what,
    }
}

/// A byte count with an optional `K`, `M` or `G` (also `KiB`, `MiB`, `GiB`) suffix.
fn parse_bytes(text: &str) -> Option<u64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

/// [`GARBAGE_LEN`] bytes that no protocol takes for an answer, ending in `end` (the
/// protocol's message terminator, so the host receives it as one complete, broken
/// message instead of waiting for more). The rest is a fixed pattern of bytes from
/// 0x80 up: never ASCII, so never a status word, a tag or a line end.
pub(crate) fn garbage(end: &[u8]) -> Vec<u8> {
    let junk = GARBAGE_LEN.saturating_sub(end.len());
    let mut bytes: Vec<u8> = (0..junk)
        .map(|i| 0x80 | ((i * 37 + 11) % 128) as u8)
        .collect();
    bytes.extend_from_slice(end);
    bytes
}

/// How a simulator compares command texts with a fault's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    /// Byte for byte (fastboot, Firehose).
    Exact,
    /// Without regard to ASCII case (AT commands). Only the modem simulator speaks AT, and it
    /// needs pseudo-terminals, so it is built on Unix only.
    #[cfg_attr(not(unix), allow(dead_code))]
    IgnoreAsciiCase,
}

/// What a command fault makes the device do instead of executing the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaction {
    /// Refuse it.
    Fail,
    /// Never answer it.
    Stall,
    /// Answer with [`garbage`].
    Garbage,
    /// Leave and come back in another mode.
    Reenumerate,
    /// Lose the link without answering; come back in the same mode.
    Drop,
}

/// A byte fault that has come due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// [`Fault::Disconnect`].
    Link,
    /// [`Fault::PowerLoss`].
    Power,
}

/// A plan being carried out inside one simulator: which faults are still armed and the
/// counters that trigger them.
#[derive(Debug)]
pub(crate) struct Injector {
    armed: Vec<Armed>,
    /// Payload bytes received so far.
    received: u64,
    /// Payload bytes written into storage so far.
    written: u64,
    /// The charge a fired [`Fault::BatteryDrop`] set.
    battery: Option<u8>,
    /// The textual form of every fault that fired, in order.
    fired: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug)]
struct Armed {
    fault: Fault,
    /// Matching commands seen so far.
    seen: u32,
    fired: bool,
}

impl Injector {
    /// Arms `plan`; fired faults are appended to `fired`. A battery drop at 0 bytes fires
    /// at once: the device starts with the low battery.
    pub fn new(plan: &FaultPlan, fired: Arc<Mutex<Vec<String>>>) -> Injector {
        let mut injector = Injector {
            armed: plan
                .faults
                .iter()
                .map(|fault| Armed {
                    fault: fault.clone(),
                    seen: 0,
                    fired: false,
                })
                .collect(),
            received: 0,
            written: 0,
            battery: None,
            fired,
        };
        injector.add_received(0);
        injector
    }

    /// Counts `text` against every armed command fault and says what to do instead of
    /// executing it, if anything. One command triggers at most one fault (the first in
    /// plan order); another fault whose count it reached fires at its next match.
    pub fn on_command(&mut self, text: &str, how: Match) -> Option<Reaction> {
        let mut reaction = None;
        let mut fired = None;
        for (i, armed) in self.armed.iter_mut().enumerate() {
            let (prefix, nth, kind) = match &armed.fault {
                Fault::Fail { command, nth } => (command, *nth, Reaction::Fail),
                Fault::Stall { command, nth } => (command, *nth, Reaction::Stall),
                Fault::Garbage { command, nth } => (command, *nth, Reaction::Garbage),
                Fault::Reenumerate { command, nth } => (command, *nth, Reaction::Reenumerate),
                Fault::Drop { command, nth } => (command, *nth, Reaction::Drop),
                _ => continue,
            };
            if armed.fired || !starts_with(text, prefix, how) {
                continue;
            }
            armed.seen = armed.seen.saturating_add(1);
            if reaction.is_none() && armed.seen >= nth {
                reaction = Some(kind);
                fired = Some(i);
            }
        }
        if let Some(i) = fired {
            self.fire(i);
        }
        reaction
    }

    /// Payload bytes the device may still receive before a [`Fault::Disconnect`] comes
    /// due; `None` when none is armed.
    pub fn receive_budget(&self) -> Option<u64> {
        self.budget(|fault| match fault {
            Fault::Disconnect { after_bytes } => Some(*after_bytes),
            _ => None,
        })
        .map(|limit| limit.saturating_sub(self.received))
    }

    /// Payload bytes the device may still write into storage before a
    /// [`Fault::PowerLoss`] comes due; `None` when none is armed.
    pub fn write_budget(&self) -> Option<u64> {
        self.budget(|fault| match fault {
            Fault::PowerLoss { after_bytes } => Some(*after_bytes),
            _ => None,
        })
        .map(|limit| limit.saturating_sub(self.written))
    }

    fn budget(&self, limit: impl Fn(&Fault) -> Option<u64>) -> Option<u64> {
        self.armed
            .iter()
            .filter(|a| !a.fired)
            .filter_map(|a| limit(&a.fault))
            .min()
    }

    /// Counts payload bytes received; fires the battery drops they reach.
    pub fn add_received(&mut self, n: u64) {
        self.received = self.received.saturating_add(n);
        for i in 0..self.armed.len() {
            let armed = &self.armed[i];
            if let Fault::BatteryDrop {
                after_bytes,
                percent,
            } = armed.fault
            {
                if !armed.fired && after_bytes <= self.received {
                    self.battery = Some(percent);
                    self.fire(i);
                }
            }
        }
    }

    /// The position, within the next `n` payload bytes, of the byte an armed
    /// [`Fault::Corrupt`] flips (the fault fires); `None` when none falls there. Only the
    /// ZXIC simulator, which needs a pseudo-terminal or a USB gadget, carries it out.
    #[cfg(unix)]
    pub fn corrupt_within(&mut self, n: u64) -> Option<u64> {
        let received = self.received;
        let (due, at) = self
            .armed
            .iter()
            .enumerate()
            .find_map(|(i, a)| match a.fault {
                Fault::Corrupt { after_bytes }
                    if !a.fired && after_bytes >= received && after_bytes - received < n =>
                {
                    Some((i, after_bytes - received))
                }
                _ => None,
            })?;
        self.fire(due);
        Some(at)
    }

    /// Counts payload bytes written into storage.
    pub fn add_written(&mut self, n: u64) {
        self.written = self.written.saturating_add(n);
    }

    /// Fires the first disconnect or power loss whose byte count has been reached: the
    /// caller must now drop the link (and, for a power loss, reboot).
    pub fn cut(&mut self) -> Option<Cut> {
        let due = self.armed.iter().position(|a| {
            !a.fired
                && match a.fault {
                    Fault::Disconnect { after_bytes } => after_bytes <= self.received,
                    Fault::PowerLoss { after_bytes } => after_bytes <= self.written,
                    _ => false,
                }
        })?;
        let cut = match self.armed[due].fault {
            Fault::PowerLoss { .. } => Cut::Power,
            _ => Cut::Link,
        };
        self.fire(due);
        Some(cut)
    }

    /// The battery charge to report for a device whose battery really holds `normal`.
    pub fn battery(&self, normal: u8) -> u8 {
        self.battery.unwrap_or(normal)
    }

    fn fire(&mut self, i: usize) {
        let armed = &mut self.armed[i];
        armed.fired = true;
        let text = armed.fault.to_string();
        tracing::info!(fault = %text, "simulator: injected fault fired");
        self.fired
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(text);
    }
}

fn starts_with(text: &str, prefix: &str, how: Match) -> bool {
    match how {
        Match::Exact => text.starts_with(prefix),
        Match::IgnoreAsciiCase => text
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injector(faults: Vec<Fault>) -> (Injector, Arc<Mutex<Vec<String>>>) {
        let fired = Arc::default();
        (Injector::new(&faults.into(), Arc::clone(&fired)), fired)
    }

    #[test]
    fn text_forms_round_trip() {
        let faults = [
            Fault::Disconnect {
                after_bytes: 1 << 20,
            },
            Fault::PowerLoss { after_bytes: 0 },
            Fault::Fail {
                command: "flash:boot".into(),
                nth: 1,
            },
            Fault::Stall {
                command: "getvar:product".into(),
                nth: 2,
            },
            Fault::Garbage {
                command: "program".into(),
                nth: 1,
            },
            Fault::BatteryDrop {
                after_bytes: 4096,
                percent: 5,
            },
            Fault::Reenumerate {
                command: "AT+CGMR".into(),
                nth: 3,
            },
            Fault::Drop {
                command: "update-super".into(),
                nth: 1,
            },
            Fault::Fail {
                command: "x#y".into(),
                nth: 7,
            },
            Fault::Fail {
                command: String::new(),
                nth: 4,
            },
        ];
        for fault in faults {
            let text = fault.to_string();
            assert_eq!(text.parse::<Fault>(), Ok(fault), "{text}");
        }
        assert_eq!(
            "disconnect@bytes=2M".parse(),
            Ok(Fault::Disconnect {
                after_bytes: 2 << 20
            })
        );
        assert_eq!(
            "battery@percent=9,bytes=1K".parse(),
            Ok(Fault::BatteryDrop {
                after_bytes: 1024,
                percent: 9
            })
        );
    }

    #[test]
    fn bad_texts_say_what_is_wrong() {
        let cases = [
            ("flash:boot", "no '@'"),
            ("explode@x#1", "unknown fault kind \"explode\""),
            ("fail@flash:boot", "COMMAND#N"),
            ("fail@flash:boot#0", "command count"),
            ("stall@x#-1", "command count"),
            ("disconnect@1048576", "bytes=N"),
            (
                "power-loss@bytes=lots",
                "\"lots\" is not a valid byte count",
            ),
            ("disconnect@bytes=99999999999G", "byte count"),
            ("battery@bytes=1", "percent=P"),
            ("battery@bytes=1,percent=101", "percentage"),
            ("battery@bytes=1,percent=5,volts=3", "percent=P"),
            ("battery@bytes=1,bytes=2,percent=5", "percent=P"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Fault>().unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn plans_are_checked_against_the_device() {
        let plan: FaultPlan = vec![Fault::BatteryDrop {
            after_bytes: 0,
            percent: 5,
        }]
        .into();
        assert_eq!(plan.check("the phone", |_| None), Ok(()));
        let err = plan
            .check("the EDL device", |_| Some("reports no battery"))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "fault battery@bytes=0,percent=5 does not apply: the EDL device reports no battery"
        );
        let zero: FaultPlan = vec![Fault::Stall {
            command: "x".into(),
            nth: 0,
        }]
        .into();
        assert!(matches!(
            zero.check("x", |_| None),
            Err(FaultPlanError::ZeroCount(_))
        ));
    }

    #[test]
    fn command_faults_fire_once_at_their_count() {
        let (mut inj, fired) = injector(vec![
            Fault::Fail {
                command: "flash:".into(),
                nth: 2,
            },
            Fault::Garbage {
                command: "at+cg".into(),
                nth: 1,
            },
        ]);
        assert_eq!(inj.on_command("flash:boot", Match::Exact), None);
        assert_eq!(inj.on_command("getvar:x", Match::Exact), None);
        assert_eq!(
            inj.on_command("flash:system", Match::Exact),
            Some(Reaction::Fail)
        );
        assert_eq!(inj.on_command("flash:vendor", Match::Exact), None);
        assert_eq!(inj.on_command("AT+CGMR", Match::Exact), None);
        assert_eq!(
            inj.on_command("AT+CGMR", Match::IgnoreAsciiCase),
            Some(Reaction::Garbage)
        );
        assert_eq!(inj.on_command("AT+CGMR", Match::IgnoreAsciiCase), None);
        assert_eq!(*fired.lock().unwrap(), ["fail@flash:#2", "garbage@at+cg#1"]);
    }

    #[test]
    fn two_faults_due_on_one_command_fire_one_after_the_other() {
        let (mut inj, _) = injector(vec![
            Fault::Fail {
                command: "getvar".into(),
                nth: 1,
            },
            Fault::Stall {
                command: String::new(),
                nth: 1,
            },
        ]);
        assert_eq!(
            inj.on_command("getvar:a", Match::Exact),
            Some(Reaction::Fail)
        );
        assert_eq!(
            inj.on_command("getvar:b", Match::Exact),
            Some(Reaction::Stall)
        );
        assert_eq!(inj.on_command("getvar:c", Match::Exact), None);
    }

    #[test]
    fn byte_faults_come_due_at_their_boundary() {
        let (mut inj, fired) = injector(vec![
            Fault::PowerLoss { after_bytes: 100 },
            Fault::Disconnect { after_bytes: 50 },
            Fault::BatteryDrop {
                after_bytes: 30,
                percent: 4,
            },
        ]);
        assert_eq!(inj.receive_budget(), Some(50));
        assert_eq!(inj.write_budget(), Some(100));
        assert_eq!(inj.battery(80), 80);
        inj.add_received(30);
        assert_eq!(inj.battery(80), 4);
        assert_eq!(inj.cut(), None);
        inj.add_received(20);
        assert_eq!(inj.receive_budget(), Some(0));
        assert_eq!(inj.cut(), Some(Cut::Link));
        assert_eq!(inj.receive_budget(), None);
        inj.add_written(99);
        assert_eq!(inj.write_budget(), Some(1));
        assert_eq!(inj.cut(), None);
        inj.add_written(1);
        assert_eq!(inj.cut(), Some(Cut::Power));
        assert_eq!(inj.cut(), None);
        assert_eq!(
            *fired.lock().unwrap(),
            [
                "battery@bytes=30,percent=4",
                "disconnect@bytes=50",
                "power-loss@bytes=100"
            ]
        );
    }

    #[test]
    fn garbage_is_never_text() {
        let bytes = garbage(b"</data>");
        assert_eq!(bytes.len(), GARBAGE_LEN);
        assert!(bytes.ends_with(b"</data>"));
        assert!(bytes[..GARBAGE_LEN - 7].iter().all(|&b| b >= 0x80));
        assert_eq!(garbage(b""), garbage(b""));
    }
}
