//! What a device's `getvar` answers mean, read the way each bootloader writes them.
//!
//! Bootloaders agree on variable names far more than on how they print values. The habits
//! handled here come from real `getvar all` transcripts (tests/data/fastboot, each with its
//! public source):
//!
//! * Numbers: `0x…` is always hex; a bare number is hex or decimal depending on the device
//!   (MediaTek LK prints `userdata: d416fbe00` and `sgpt: 4200`, meaning 0x4200; U-Boot
//!   zero-pads), so the style is decided once from all of a device's partition sizes.
//!   Block sizes are powers of two, which reads `logical-block-size:0x512` as 512.
//! * Long values split over several variables, `name[0]`, `name[1]`, … (Motorola).
//! * Placeholders that mean "not reported": empty values, `N/A`, `unknown`.
//! * Battery voltages with or without units: `4148mV`, `4055 mV`, `4.2V`, `0mv`, `4280`.

use std::collections::{BTreeMap, BTreeSet};

/// How a device writes numbers that have no `0x` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NumberStyle {
    /// Bare numbers are decimal (most bootloaders print sizes with `0x` and counts bare).
    #[default]
    Decimal,
    /// Bare numbers are hex (MediaTek LK, some U-Boot builds).
    BareHex,
}

/// Storage is addressed in sectors: every real partition size is a whole number of them.
const SECTOR: u64 = 512;

/// Variables that name a partition after the colon.
const PARTITION_LISTS: &[&str] = &[
    "partition-size",
    "partition-type",
    "is-logical",
    "is_logical",
];

/// The variables of one `getvar all`, split values joined, in the device's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables {
    entries: Vec<(String, String)>,
    style: NumberStyle,
}

impl Variables {
    /// Collects `(name, value)` pairs as the client read them. Parts of a split value
    /// (`name[0]`, `name[1]`, …) are joined in index order, in the place of the first part;
    /// their text is kept as sent, since a cut may fall next to a space. Of a name listed
    /// twice, the first answer counts.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut entries: Vec<(String, String)> = Vec::new();
        let mut parts: BTreeMap<String, Vec<(u32, String)>> = BTreeMap::new();
        for (name, value) in pairs {
            if let Some((base, index)) = split_part(&name) {
                if !parts.contains_key(base) && !entries.iter().any(|(n, _)| n == base) {
                    entries.push((base.to_string(), String::new()));
                }
                parts
                    .entry(base.to_string())
                    .or_default()
                    .push((index, value));
            } else if !entries.iter().any(|(n, _)| *n == name) {
                entries.push((name, value.trim().to_string()));
            }
        }
        for (base, mut pieces) in parts {
            pieces.sort_by_key(|(index, _)| *index);
            let joined: String = pieces.into_iter().map(|(_, text)| text).collect();
            if let Some(entry) = entries.iter_mut().find(|(n, v)| *n == base && v.is_empty()) {
                entry.1 = joined.trim().to_string();
            }
        }
        let style = decide_style(&entries);
        Variables { entries, style }
    }

    /// Whether the listing was empty (the device has no `getvar all`, or it failed).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value as listed (trimmed, possibly empty or a placeholder), if the name was listed.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every variable in the device's order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How this device writes bare numbers, decided from all its partition sizes.
    pub fn number_style(&self) -> NumberStyle {
        self.style
    }

    /// Partition sizes as the device meant them, and the partitions it names without a
    /// size that can be read (listed by type or `is-logical` only, or with a size that is
    /// not a number). A partition is never dropped: it is in one set or the other.
    pub fn partitions(&self) -> (BTreeMap<String, u64>, BTreeSet<String>) {
        let mut sizes = BTreeMap::new();
        let mut named = BTreeSet::new();
        for (name, value) in &self.entries {
            let Some((list, partition)) = name.split_once(':') else {
                continue;
            };
            if !PARTITION_LISTS.contains(&list) || partition.is_empty() {
                continue;
            }
            named.insert(partition.to_string());
            if list == "partition-size" {
                if let Some(size) = parse_size(value, self.style) {
                    sizes.insert(partition.to_string(), size);
                }
            }
        }
        let unknown = named
            .into_iter()
            .filter(|p| !sizes.contains_key(p))
            .collect();
        (sizes, unknown)
    }
}

/// Variables that take an argument; `getvar:all` prints them as `name:arg:value`.
const ARGUMENT_VARIABLES: &[&str] = &[
    "partition-size",
    "partition-type",
    "has-slot",
    "is-logical",
    // Amlogic's U-Boot spells it with an underscore.
    "is_logical",
    "slot-successful",
    "slot-unbootable",
    "slot-retry-count",
];

/// Splits a `getvar:all` line into key and value, or `None` for free text.
///
/// Values may contain colons (build fingerprints do), so only the first colon separates —
/// after the argument for variables that take one. A part of a split value (`name[1]`)
/// keeps its text as sent but for the one blank after the colon: Motorola cuts long values
/// at a fixed width, so a part may start or end with a meaningful space.
pub fn split_variable(line: &str) -> Option<(String, String)> {
    let (name, rest) = line.split_once(':')?;
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    if name.ends_with(']') {
        return Some((
            name.to_string(),
            rest.strip_prefix(' ').unwrap_or(rest).to_string(),
        ));
    }
    if ARGUMENT_VARIABLES.contains(&name) {
        if let Some((argument, value)) = rest.split_once(':') {
            return Some((
                format!("{name}:{}", argument.trim()),
                value.trim().to_string(),
            ));
        }
    }
    Some((name.to_string(), rest.trim().to_string()))
}

/// `name[3]` → (`name`, 3).
fn split_part(name: &str) -> Option<(&str, u32)> {
    let (base, rest) = name.strip_suffix(']')?.rsplit_once('[')?;
    let index = rest.parse().ok()?;
    (!base.is_empty()).then_some((base, index))
}

/// Bare partition sizes are hex when any has a hex letter or leading zeros, or when only
/// the hex reading makes every one of them a whole number of sectors.
fn decide_style(entries: &[(String, String)]) -> NumberStyle {
    let bare: Vec<&str> = entries
        .iter()
        .filter(|(n, _)| n.starts_with("partition-size:"))
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty() && !has_hex_prefix(v) && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    let hex_letters = bare
        .iter()
        .any(|v| v.bytes().any(|b| b.is_ascii_alphabetic()));
    let zero_padded = bare.iter().any(|v| v.len() > 1 && v.starts_with('0'));
    let whole = |n: Option<u64>| n.is_some_and(|n| n % SECTOR == 0);
    let sectors_only_in_hex = !bare.is_empty()
        && bare.iter().all(|v| whole(u64::from_str_radix(v, 16).ok()))
        && bare.iter().any(|v| !whole(v.parse().ok()));
    if hex_letters || zero_padded || sectors_only_in_hex {
        NumberStyle::BareHex
    } else {
        NumberStyle::Decimal
    }
}

fn has_hex_prefix(text: &str) -> bool {
    text.starts_with("0x") || text.starts_with("0X")
}

/// Reads a size or count: `0x…` is hex, a bare number is read in the device's style.
pub fn parse_size(text: &str, style: NumberStyle) -> Option<u64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(hex, 16).ok();
    }
    match style {
        NumberStyle::Decimal => t.parse().ok(),
        NumberStyle::BareHex => u64::from_str_radix(t, 16).ok(),
    }
}

/// Reads a block size, which is always a power of two: some bootloaders print a decimal
/// block size behind `0x` (`logical-block-size:0x512` is 512 bytes, not 1298).
pub fn parse_block_size(text: &str, style: NumberStyle) -> Option<u64> {
    let value = parse_size(text, style)?;
    if value.is_power_of_two() {
        return Some(value);
    }
    let digits = text
        .trim()
        .get(2..)
        .filter(|_| has_hex_prefix(text.trim()))?;
    digits.parse::<u64>().ok().filter(|v| v.is_power_of_two())
}

/// Whether a value means "not reported": empty, `N/A`, `unknown`.
pub fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    v.is_empty()
        || ["n/a", "na", "unknown"]
            .iter()
            .any(|p| v.eq_ignore_ascii_case(p))
}

/// The serial number bootloaders report when none was programmed.
pub fn is_placeholder_serial(value: &str) -> bool {
    is_placeholder(value) || value.trim().eq_ignore_ascii_case("0123456789ABCDEF")
}

/// `yes`/`no` as bootloaders write it (`true`/`false` and `1`/`0` too).
pub fn yes_no(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Some(true),
        "no" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// A charge in percent: `68`, `68 %`, `65.64 %` (the fraction is dropped).
pub fn parse_percent(value: &str) -> Option<u8> {
    let t = value.trim().trim_end_matches('%').trim();
    let whole = t.split_once('.').map_or(t, |(w, _)| w);
    whole.parse::<u8>().ok().filter(|p| *p <= 100)
}

/// Highest voltage accepted as a battery reading; anything above is a misread unit.
const MAX_MILLIVOLTS: f64 = 20_000.0;

/// A battery voltage in millivolts: `4148mV`, `4055 mV`, `0mv`, `4.2V`, bare `4280` (mV),
/// bare `3884375` (µV). `0` means the bootloader measured nothing (boards without a
/// battery answer `0mv`), and a bare number below 100 (`4`) is too coarse to say anything,
/// so both are `None`.
pub fn parse_millivolts(value: &str) -> Option<u32> {
    let t = value.trim().to_ascii_lowercase();
    let millivolts = if let Some(mv) = t.strip_suffix("mv") {
        mv.trim().parse::<f64>().ok()?
    } else if let Some(v) = t.strip_suffix('v') {
        v.trim().parse::<f64>().ok()? * 1000.0
    } else {
        let n = t.parse::<u64>().ok()?;
        match n {
            0..=99 => return None,
            100..=99_999 => n as f64,
            _ => n as f64 / 1000.0,
        }
    };
    (millivolts > 0.0 && millivolts <= MAX_MILLIVOLTS).then(|| millivolts.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(lines: &[(&str, &str)]) -> Variables {
        Variables::new(lines.iter().map(|(n, v)| (n.to_string(), v.to_string())))
    }

    #[test]
    fn mediatek_bare_numbers_are_hex() {
        let v = vars(&[
            ("max-download-size", "0x8000000"),
            ("partition-size:sgpt", "4200"),
            ("partition-size:flashinfo", "1000000"),
            ("partition-size:userdata", "d416fbe00"),
        ]);
        assert_eq!(v.number_style(), NumberStyle::BareHex);
        let (sizes, unknown) = v.partitions();
        assert_eq!(sizes["sgpt"], 0x4200);
        assert_eq!(sizes["flashinfo"], 0x100_0000);
        assert_eq!(sizes["userdata"], 0xd_416f_be00);
        assert!(unknown.is_empty());
    }

    #[test]
    fn bare_digits_alone_are_hex_when_only_hex_gives_whole_sectors() {
        // No hex letter anywhere, yet 4200 and 1000000 are no whole number of sectors.
        let v = vars(&[
            ("partition-size:sgpt", "4200"),
            ("partition-size:flashinfo", "1000000"),
        ]);
        assert_eq!(v.number_style(), NumberStyle::BareHex);
        // Decimal sizes that are whole sectors stay decimal.
        let v = vars(&[
            ("partition-size:a", "4096"),
            ("partition-size:b", "1048576"),
        ]);
        assert_eq!(v.number_style(), NumberStyle::Decimal);
    }

    #[test]
    fn zero_padded_u_boot_numbers_are_hex() {
        let v = vars(&[
            ("partition-size:userdata", "0000000073c00000"),
            ("erase-block-size", "2000"),
        ]);
        assert_eq!(v.number_style(), NumberStyle::BareHex);
        assert_eq!(v.partitions().0["userdata"], 0x73c0_0000);
        assert_eq!(parse_size("2000", v.number_style()), Some(0x2000));
        assert_eq!(
            parse_size("0x0000000575a00000", NumberStyle::Decimal),
            Some(0x5_75a0_0000)
        );
    }

    #[test]
    fn a_decimal_download_size_in_hex_output_stays_decimal() {
        let v = vars(&[
            ("partition-size:userdata", "0xB86CF4000"),
            ("max-download-size", "805306368"),
        ]);
        assert_eq!(v.number_style(), NumberStyle::Decimal);
        assert_eq!(
            parse_size(v.get("max-download-size").unwrap(), v.number_style()),
            Some(805_306_368)
        );
    }

    #[test]
    fn block_sizes_are_powers_of_two() {
        assert_eq!(parse_block_size("0x512", NumberStyle::Decimal), Some(512));
        assert_eq!(parse_block_size("0x1000", NumberStyle::Decimal), Some(4096));
        assert_eq!(parse_block_size("0x200", NumberStyle::Decimal), Some(512));
        assert_eq!(
            parse_block_size("80000", NumberStyle::BareHex),
            Some(0x80000)
        );
        assert_eq!(parse_block_size("0x513", NumberStyle::Decimal), None);
    }

    #[test]
    fn unreadable_and_unsized_partitions_are_kept_as_unknown() {
        let v = vars(&[
            ("partition-type:boot", "raw"),
            ("partition-size:boot", "0x4000000"),
            ("partition-type:misc", "raw"),
            ("partition-size:odd", "lots"),
            ("is-logical:system_a", "yes"),
            ("partition-size:vendor_b", "0x0"),
            ("has-slot:boot", "yes"),
        ]);
        let (sizes, unknown) = v.partitions();
        assert_eq!(sizes.len(), 2);
        assert_eq!(sizes["vendor_b"], 0);
        let unknown: Vec<&str> = unknown.iter().map(String::as_str).collect();
        assert_eq!(unknown, ["misc", "odd", "system_a"]);
    }

    #[test]
    fn split_values_are_joined_in_index_order_keeping_spaces_at_the_cuts() {
        let v = vars(&[
            ("ro.build.fingerprint[1]", "37-15/13:user/release-keys"),
            (
                "ro.build.fingerprint[0]",
                "motorola/cedric/cedric:7.0/NPP25.1",
            ),
            ("kernel.version[0]", "Linux 3.18 CST"),
            ("kernel.version[1]", " 2017"),
            ("version-bootloader[0]", "moto-msm8937-C0.1"),
            ("version-bootloader[1]", "5(*)"),
            ("product", "cedric"),
        ]);
        assert_eq!(
            v.get("ro.build.fingerprint"),
            Some("motorola/cedric/cedric:7.0/NPP25.137-15/13:user/release-keys")
        );
        assert_eq!(v.get("kernel.version"), Some("Linux 3.18 CST 2017"));
        assert_eq!(v.get("version-bootloader"), Some("moto-msm8937-C0.15(*)"));
        let names: Vec<&str> = v.iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "ro.build.fingerprint",
                "kernel.version",
                "version-bootloader",
                "product"
            ]
        );
    }

    #[test]
    fn placeholders_mean_not_reported() {
        for p in ["", "  ", "N/A", "n/a", "unknown", "Unknown"] {
            assert!(is_placeholder(p), "{p:?}");
        }
        assert!(!is_placeholder("none"));
        assert!(!is_placeholder("T505XXS8CXG1"));
        assert!(is_placeholder_serial("0123456789ABCDEF"));
        assert!(!is_placeholder_serial("28191FDH300AZK"));
    }

    #[test]
    fn battery_values_with_and_without_units() {
        assert_eq!(parse_millivolts("4148mV"), Some(4148));
        assert_eq!(parse_millivolts("4055 mV"), Some(4055));
        assert_eq!(parse_millivolts("4.2V"), Some(4200));
        assert_eq!(parse_millivolts("4280"), Some(4280));
        assert_eq!(parse_millivolts("3884375"), Some(3884));
        assert_eq!(parse_millivolts("0mv"), None);
        assert_eq!(parse_millivolts("4"), None);
        assert_eq!(parse_millivolts("lots"), None);
        assert_eq!(parse_percent("68 %"), Some(68));
        assert_eq!(parse_percent("65.64 %"), Some(65));
        assert_eq!(parse_percent("100"), Some(100));
        assert_eq!(parse_percent("101"), None);
    }

    #[test]
    fn yes_and_no_in_their_spellings() {
        assert_eq!(yes_no(" yes"), Some(true));
        assert_eq!(yes_no("no"), Some(false));
        assert_eq!(yes_no("1"), Some(true));
        assert_eq!(yes_no("maybe"), None);
    }
}
