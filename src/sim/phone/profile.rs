//! Bootloader profiles: the same phone, worded the way one family of real bootloaders
//! words its answers (`flashline sim phone --profile NAME`).
//!
//! Each habit is one seen in the real transcripts under tests/data/fastboot (see
//! SOURCES.md there for the devices and posts); provenance `public reports`:
//!
//! | profile | numbers | spacing | battery | other habits |
//! |---|---|---|---|---|
//! | `abl` (Qualcomm ABL) | `0x4000000` | `partition-size:p: 0x…`, `partition-type:p:raw` | `battery-voltage:4009` (mV), `battery-soc-ok` | empty `version-baseband:` |
//! | `lk` (Motorola LK) | `0x4000000` | `name: value` | `battery-voltage:4166` (mV) | values over 34 characters split as `name[0]`, `name[1]` |
//! | `mtk-lk` (MediaTek LK) | sizes bare hex `4000000`, `max-download-size: 0x8000000` | `name: value`, `partition-type:p: raw data` | `battery-voltage: 4148mV` | empty `variant:`, final OKAY `Done!!` |
//! | `uboot` (Amlogic/Rockchip U-Boot) | sizes zero-padded hex `0000000004000000` | `name: value` | `battery-voltage: 0mv` (nothing measured) | `version-baseband: N/A`, the last variable sent in the final OKAY |
//! | `pixel` | `0x4000000` (lower case) | `name:value`, listed in name order | `battery-soc:80 %`, `battery-voltage:4060 mV` | |
//! | `fastbootd` | `0x4000000` | `name:value` | none | `is-userspace:yes`, empty `version-baseband:` |
//!
//! A profile only rewords answers: what the phone does is unchanged.

use std::fmt;
use std::str::FromStr;

use crate::protocol::fastboot::vars::{parse_size, NumberStyle};

/// A family of bootloaders whose wording the phone takes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Qualcomm LK as Motorola ships it.
    Lk,
    /// Qualcomm ABL (UEFI).
    Abl,
    /// MediaTek LK.
    MtkLk,
    /// U-Boot on Amlogic and Rockchip boards.
    Uboot,
    /// Google Pixel.
    Pixel,
    /// Android's userspace fastboot.
    Fastbootd,
}

/// Every profile, for `--help` and tests.
pub const PROFILES: [Profile; 6] = [
    Profile::Lk,
    Profile::Abl,
    Profile::MtkLk,
    Profile::Uboot,
    Profile::Pixel,
    Profile::Fastbootd,
];

/// Motorola LK splits values longer than this into `name[N]` parts.
const SPLIT_WIDTH: usize = 34;
/// The battery of a profile that reports volts: 0 % at 3.5 V, 100 % at 4.2 V.
const EMPTY_MV: u32 = 3500;
const FULL_MV: u32 = 4200;

impl Profile {
    /// Variables this family lists beyond the phone's own.
    pub fn extra_names(self) -> &'static [&'static str] {
        match self {
            Profile::Abl | Profile::Lk | Profile::Pixel => &["battery-voltage", "version-baseband"],
            Profile::MtkLk => &["battery-voltage", "variant"],
            Profile::Uboot => &["battery-voltage", "version-baseband"],
            Profile::Fastbootd => &["is-userspace", "version-baseband"],
        }
    }

    /// `getvar:NAME` as this family answers it, from the phone's own answer for any name
    /// (`own`); `None` when the family does not report the variable.
    pub fn value(self, name: &str, own: &dyn Fn(&str) -> Option<String>) -> Option<String> {
        use Profile::*;
        let key = name.split_once(':').map_or(name, |(key, _)| key);
        let millivolts = || {
            own("battery-soc")
                .and_then(|p| p.parse::<u32>().ok())
                .map(|p| EMPTY_MV + p.min(100) * (FULL_MV - EMPTY_MV) / 100)
        };
        match (self, key) {
            (Pixel, "battery-soc") => own(key).map(|p| format!("{p} %")),
            (_, "battery-soc") => None,
            (Uboot | Fastbootd, "battery-soc-ok") => None,
            (Pixel, "battery-voltage") => millivolts().map(|mv| format!("{mv} mV")),
            (MtkLk, "battery-voltage") => millivolts().map(|mv| format!("{mv}mV")),
            (Abl | Lk, "battery-voltage") => millivolts().map(|mv| mv.to_string()),
            (Uboot, "battery-voltage") => Some("0mv".into()),
            (Fastbootd, "battery-voltage") => None,
            (_, "is-userspace") => Some(if self == Fastbootd { "yes" } else { "no" }.into()),
            (Uboot, "version-baseband") => Some("N/A".into()),
            (Abl | Lk | Pixel | Fastbootd, "version-baseband") | (MtkLk, "variant") => {
                Some(String::new())
            }
            (MtkLk, "partition-type") => own(name).map(|_| "raw data".into()),
            (_, "partition-size" | "max-download-size") => {
                let size = parse_size(&own(name)?, NumberStyle::Decimal)?;
                Some(self.number(key, size))
            }
            _ => own(name),
        }
    }

    /// How this family prints a size.
    fn number(self, key: &str, size: u64) -> String {
        match (self, key) {
            (Profile::MtkLk, "partition-size") => format!("{size:x}"),
            (Profile::Uboot, "partition-size") => format!("{size:016x}"),
            (Profile::Uboot, _) => format!("0x{size:08x}"),
            (Profile::MtkLk | Profile::Pixel, _) => format!("0x{size:x}"),
            _ => format!("0x{size:X}"),
        }
    }

    /// The INFO messages of `getvar all` for these variables, and the text of the final
    /// OKAY.
    pub fn listing(self, mut vars: Vec<(String, String)>) -> (Vec<String>, String) {
        if self == Profile::Pixel {
            vars.sort();
        }
        let mut last = match self {
            Profile::MtkLk => "Done!!".to_string(),
            _ => String::new(),
        };
        if self == Profile::Uboot {
            if let Some((name, value)) = vars.pop() {
                last = format!("{name}:{value}");
            }
        }
        let mut lines = Vec::new();
        for (name, value) in vars {
            let key = name.split_once(':').map_or(name.as_str(), |(key, _)| key);
            let separator = match self {
                Profile::Lk | Profile::MtkLk | Profile::Uboot => ": ",
                Profile::Abl if key == "partition-size" => ": ",
                _ => ":",
            };
            if self == Profile::Lk && value.len() > SPLIT_WIDTH {
                let chars: Vec<char> = value.chars().collect();
                for (i, part) in chars.chunks(SPLIT_WIDTH).enumerate() {
                    let part: String = part.iter().collect();
                    lines.push(format!("{name}[{i}]{separator}{part}"));
                }
            } else {
                lines.push(format!("{name}{separator}{value}"));
            }
        }
        (lines, last)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Lk => "lk",
            Profile::Abl => "abl",
            Profile::MtkLk => "mtk-lk",
            Profile::Uboot => "uboot",
            Profile::Pixel => "pixel",
            Profile::Fastbootd => "fastbootd",
        })
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PROFILES
            .into_iter()
            .find(|p| p.to_string() == s)
            .ok_or_else(|| {
                format!(
                    "unknown profile {s:?}: expected lk, abl, mtk-lk, uboot, pixel or fastbootd"
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(name: &str) -> Option<String> {
        match name {
            "battery-soc" => Some("80".into()),
            "battery-soc-ok" => Some("yes".into()),
            "max-download-size" => Some("0x10000000".into()),
            "partition-size:boot_a" => Some("0x4000000".into()),
            "partition-type:boot_a" => Some("raw".into()),
            "version-bootloader" => Some("moto-msm8937-C0.15-and-a-long-tail-of-text".into()),
            _ => None,
        }
    }

    #[test]
    fn each_family_prints_numbers_its_own_way() {
        let size = |p: Profile| p.value("partition-size:boot_a", &own).unwrap();
        assert_eq!(size(Profile::Abl), "0x4000000");
        assert_eq!(size(Profile::MtkLk), "4000000");
        assert_eq!(size(Profile::Uboot), "0000000004000000");
        assert_eq!(size(Profile::Pixel), "0x4000000");
        assert_eq!(
            Profile::MtkLk.value("max-download-size", &own).as_deref(),
            Some("0x10000000")
        );
        assert_eq!(
            Profile::MtkLk
                .value("partition-type:boot_a", &own)
                .as_deref(),
            Some("raw data")
        );
    }

    #[test]
    fn each_family_reports_its_battery_its_own_way() {
        let battery = |p: Profile, n: &str| p.value(n, &own);
        assert_eq!(
            battery(Profile::Pixel, "battery-soc").as_deref(),
            Some("80 %")
        );
        assert_eq!(
            battery(Profile::Pixel, "battery-voltage").as_deref(),
            Some("4060 mV")
        );
        assert_eq!(
            battery(Profile::MtkLk, "battery-voltage").as_deref(),
            Some("4060mV")
        );
        assert_eq!(
            battery(Profile::Abl, "battery-voltage").as_deref(),
            Some("4060")
        );
        assert_eq!(battery(Profile::Abl, "battery-soc"), None);
        assert_eq!(
            battery(Profile::Uboot, "battery-voltage").as_deref(),
            Some("0mv")
        );
        assert_eq!(battery(Profile::Uboot, "battery-soc-ok"), None);
        assert_eq!(battery(Profile::Fastbootd, "battery-voltage"), None);
    }

    #[test]
    fn listings_keep_each_familys_layout() {
        let vars = || {
            vec![
                (
                    "version-bootloader".to_string(),
                    own("version-bootloader").unwrap(),
                ),
                ("partition-type:boot_a".to_string(), "raw".to_string()),
                ("partition-size:boot_a".to_string(), "0x4000000".to_string()),
                ("unlocked".to_string(), "yes".to_string()),
            ]
        };
        let (lines, last) = Profile::Abl.listing(vars());
        assert_eq!(lines[1], "partition-type:boot_a:raw");
        assert_eq!(lines[2], "partition-size:boot_a: 0x4000000");
        assert_eq!(last, "");
        let (lines, _) = Profile::Lk.listing(vars());
        assert_eq!(
            lines[0],
            "version-bootloader[0]: moto-msm8937-C0.15-and-a-long-tail"
        );
        assert_eq!(lines[1], "version-bootloader[1]: -of-text");
        let (lines, last) = Profile::Uboot.listing(vars());
        assert_eq!(lines.len(), 3);
        assert_eq!(last, "unlocked:yes");
        let (lines, last) = Profile::Pixel.listing(vars());
        assert_eq!(lines[0], "partition-size:boot_a:0x4000000");
        assert_eq!(last, "");
        assert_eq!(Profile::MtkLk.listing(vars()).1, "Done!!");
    }

    #[test]
    fn names_round_trip() {
        for p in PROFILES {
            assert_eq!(p.to_string().parse::<Profile>(), Ok(p));
        }
        assert!("qualcomm".parse::<Profile>().is_err());
    }
}
