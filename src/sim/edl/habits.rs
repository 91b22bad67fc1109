//! Habits of shipped Firehose programmers that the virtual device can copy, so hosts are
//! tested against devices as they really answer, not only against a tidy reference.
//!
//! Each habit names where it was seen. "public reports" means transcripts and maintainers'
//! notes in public issue threads (collected in notes/real-devices.md and, lines as posted,
//! in tests/data/firehose/); none is hardware-verified by this project.
//!
//! One habit is always on rather than a profile: `<power>` takes only the values fh_loader
//! documents (`reset`, `off`, `reset_to_edl`; public reports: notes/real-devices.md,
//! "Optional commands"; qdl sends `reset`, qdl-rs `reset_to_edl`) and NAKs any other.
//! That a programmer refuses a value it does not know is this simulator's reading
//! (virtual): <https://github.com/bkerler/edl/issues/480> shows only that a `<power>` a
//! programmer did not carry out as asked leaves the device sitting in EDL.

use std::fmt;
use std::str::FromStr;

/// How `<configure>` is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ConfigureHabit {
    /// ACK (or NAK above the maximum) with the full set of attributes.
    #[default]
    Complete,
    /// A payload above the maximum is NAKed with only the counter-offer,
    /// `MaxPayloadSizeToTargetInBytes`, and no log; an ACK carries no
    /// `MaxPayloadSizeFromTargetInBytes` or `TargetName`. Public reports:
    /// <https://github.com/fwupd/fwupd/pull/3422> (fwupd's modem-manager Firehose updater
    /// retries configure with the shorter size a NAK suggests);
    /// <https://github.com/bkerler/edl/pull/323> (an MSM8916 LTE modem whose configure
    /// failed until the NAK's size was used).
    CounterOffer,
    /// Log lines only, no `<response>`; the programmer is configured nonetheless. Public
    /// reports: <https://github.com/commaai/qdl.js/issues/94> ("Calling handler for
    /// configure", "Storage type set to value UFS" as logs);
    /// <https://github.com/bkerler/edl/issues/230> (a configure answered by one log line,
    /// "Host's payload to target size is too large"); notes/real-devices.md, "configure".
    LogsOnly,
    /// Any `MemoryName` is accepted and the ACK names the storage its own way (`SDCC` for
    /// eMMC, the controller's name, which <https://github.com/strongtz/edl-ng/issues/5>
    /// shows configured as `Sdcc`), not as it was asked. Public reports:
    /// notes/real-devices.md ("`MemoryName` may differ from the request").
    OtherMemoryName,
}

/// The habits one virtual device has; none by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Habits {
    /// `<getsha256digest>` is an unknown tag, NAKed. Public reports: notes/real-devices.md
    /// ("Many shipped programmers lack `getsha256digest`"); the device of
    /// <https://github.com/commaai/qdl.js/issues/94> lists its 16 supported functions, and
    /// the digest is not one of them.
    pub no_digest: bool,
    /// LUNs whose `<getstorageinfo>` is NAKed. Public reports: notes/real-devices.md ("some
    /// NAK `getstorageinfo` on higher LUNs").
    pub storage_info_nak: Vec<u32>,
    /// Each LUN is created with its primary GPT header destroyed (the backup at the last
    /// sector is intact), as on the bricked devices `recover` is for. Virtual: a state, not
    /// a programmer's habit.
    pub damaged_primary_gpt: bool,
    /// How `<configure>` is answered.
    pub configure: ConfigureHabit,
    /// A worn flash cell: the byte at this offset of this LUN is stored with its lowest
    /// bit flipped whenever `<program>` writes it, so a host that does not check what the
    /// storage holds never notices. Virtual.
    pub weak_byte: Option<(u32, u64)>,
}

/// A named set of habits, as `flashline sim edl --profile` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// [`Habits::no_digest`].
    NoDigest,
    /// [`Habits::storage_info_nak`] for LUN 1 and above (a UFS device).
    StorageInfoNak,
    /// [`Habits::damaged_primary_gpt`].
    DamagedGpt,
    /// [`ConfigureHabit::CounterOffer`] with an 8 KiB maximum (the value reported).
    CounterOffer,
    /// [`ConfigureHabit::LogsOnly`].
    ConfigureLogsOnly,
    /// [`ConfigureHabit::OtherMemoryName`].
    OtherMemoryName,
    /// Raw NAND storage ([`super::EdlConfig::nand`]): pages, erase blocks, no GPT, and a
    /// wrong page size NAKed. Public reports: issue 12 (MDM9x07/SDX-class modems, most ZTE
    /// dongles among them); notes/real-devices.md ("NAND modems NAK a wrong sector size").
    Nand,
}

impl Profile {
    /// Every profile, for help texts.
    pub const ALL: [Profile; 7] = [
        Profile::NoDigest,
        Profile::StorageInfoNak,
        Profile::DamagedGpt,
        Profile::CounterOffer,
        Profile::ConfigureLogsOnly,
        Profile::OtherMemoryName,
        Profile::Nand,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::NoDigest => "no-digest",
            Profile::StorageInfoNak => "storage-info-nak",
            Profile::DamagedGpt => "damaged-gpt",
            Profile::CounterOffer => "counter-offer",
            Profile::ConfigureLogsOnly => "configure-logs-only",
            Profile::OtherMemoryName => "other-memory-name",
            Profile::Nand => "nand",
        }
    }

    /// Adds the profile's habits to a device configuration.
    pub fn apply(self, cfg: &mut super::EdlConfig) {
        let habits = &mut cfg.habits;
        match self {
            Profile::NoDigest => habits.no_digest = true,
            Profile::StorageInfoNak => {
                habits.storage_info_nak = (1..super::MAX_LUNS as u32).collect();
            }
            Profile::DamagedGpt => habits.damaged_primary_gpt = true,
            Profile::CounterOffer => {
                habits.configure = ConfigureHabit::CounterOffer;
                cfg.max_payload_to_target = 8192;
            }
            Profile::ConfigureLogsOnly => habits.configure = ConfigureHabit::LogsOnly,
            Profile::OtherMemoryName => habits.configure = ConfigureHabit::OtherMemoryName,
            Profile::Nand => {
                let nand = super::EdlConfig::nand();
                cfg.sector_size = nand.sector_size;
                cfg.memory_name = nand.memory_name;
                cfg.luns = nand.luns;
                cfg.partitions = nand.partitions;
                cfg.identity_labels = nand.identity_labels;
            }
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
                format!("unknown profile {s:?}; known: {}", names.join(", "))
            })
    }
}

/// The vendor spelling of a storage type, as [`ConfigureHabit::OtherMemoryName`] answers.
pub(super) fn vendor_memory_name(memory: &str) -> &'static str {
    if memory.eq_ignore_ascii_case("emmc") {
        "SDCC"
    } else if memory.eq_ignore_ascii_case("ufs") {
        "UFS"
    } else {
        "NAND"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_by_name() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>().unwrap(), p);
        }
        assert!("nope".parse::<Profile>().unwrap_err().contains("no-digest"));
    }
}
