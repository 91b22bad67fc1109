//! `android-info.txt`: what a factory image requires of the device it is flashed onto.
//!
//! The rules are those Google's `fastboot` applies before `update` (`ParseRequirementLine`
//! and `check_requirement` in AOSP `fastboot/fastboot.cpp`; facts only):
//! - `require NAME=V1|V2|…` (the word `require` may be left out): the device's `getvar NAME`
//!   must be one of the values; `board` is answered by the `product` variable;
//! - `require-for-product:P NAME=…`: the same, but only on a device whose product is `P`;
//! - `require partition-exists=P`: the device must answer `getvar has-slot:P` with `yes` or
//!   `no` (a device without the partition fails the command);
//! - `reject NAME=…` and values ending in `*` (prefix matches) also exist.
//!
//! A flashline package carries requirements as exact values checked by preflight, so each
//! line becomes one [`Requirement`]. What that cannot say exactly (`reject`, prefix
//! matches, a per-product requirement on a package for several products) is refused here
//! rather than weakened.

use std::collections::BTreeMap;

use super::error::{shown, FactoryError};
use crate::package::Requirement;

/// What android-info.txt requires, as a package carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AndroidInfo {
    /// The boards (products) the image is for, from `require board=` (or `product=`).
    pub boards: Vec<String>,
    /// Every requirement, in variable order, each variable once (`board` included).
    pub requirements: Vec<Requirement>,
    /// Lines that do not apply to any of the boards, and so were left out.
    pub dropped: Vec<String>,
}

/// One parsed line.
struct Line {
    number: usize,
    text: String,
    /// `require-for-product:` product, if any.
    product: Option<String>,
    variable: String,
    values: Vec<String>,
}

/// Parses android-info.txt and turns it into package requirements.
pub fn parse(text: &str) -> Result<AndroidInfo, FactoryError> {
    let lines = text
        .lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(number, line)| parse_line(number, line))
        .collect::<Result<Vec<_>, _>>()?;

    let mut boards: Option<Vec<String>> = None;
    for line in lines.iter().filter(|l| l.product.is_none()) {
        if matches!(line.variable.as_str(), "board" | "product") {
            boards = Some(intersect(boards, &line.values, line)?);
        }
    }
    let boards = boards.ok_or(FactoryError::NoBoard)?;

    let mut merged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut dropped = Vec::new();
    for line in &lines {
        if let Some(product) = &line.product {
            if !boards.contains(product) {
                dropped.push(line.text.clone());
                continue;
            }
            if boards.len() > 1 {
                return Err(fail(
                    line,
                    "a requirement for one of several boards cannot be carried by a package \
                     for all of them; pack one package per board",
                ));
            }
        }
        let previous = merged.remove(&line.variable);
        let values = intersect(previous, &line.values, line)?;
        merged.insert(line.variable.clone(), values);
    }
    let requirements = merged
        .into_iter()
        .map(|(variable, values)| Requirement { variable, values })
        .collect();
    Ok(AndroidInfo {
        boards,
        requirements,
        dropped,
    })
}

fn parse_line(number: usize, text: &str) -> Result<Line, FactoryError> {
    let mut line = Line {
        number,
        text: text.to_owned(),
        product: None,
        variable: String::new(),
        values: Vec::new(),
    };
    let (head, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let assignment = if let Some(product) = head.strip_prefix("require-for-product:") {
        // `require-for-product:P NAME=…`; AOSP also allows spaces after the colon.
        let (product, rest) = if product.is_empty() {
            let rest = rest.trim_start();
            rest.split_once(char::is_whitespace).unwrap_or((rest, ""))
        } else {
            (product, rest)
        };
        if product.is_empty() {
            return Err(fail(&line, "require-for-product: names no product"));
        }
        line.product = Some(product.to_owned());
        rest
    } else if head == "reject" {
        return Err(fail(
            &line,
            "`reject` cannot be carried: a package lists the values it accepts",
        ));
    } else if head == "require" {
        rest
    } else {
        text
    };
    let Some((variable, values)) = assignment.split_once('=') else {
        return Err(fail(&line, "not a requirement (NAME=VALUE|VALUE…)"));
    };
    let variable = variable.trim();
    if variable.is_empty() || variable.contains(char::is_whitespace) {
        return Err(fail(&line, "not a requirement (NAME=VALUE|VALUE…)"));
    }
    let values: Vec<String> = values.split('|').map(|v| v.trim().to_owned()).collect();
    if values.iter().any(String::is_empty) {
        return Err(fail(&line, "a value is empty"));
    }
    if values.iter().any(|v| v.ends_with('*')) {
        return Err(fail(
            &line,
            "prefix matches (`*`) cannot be carried: a package lists exact values",
        ));
    }
    if variable == "partition-exists" {
        // Google's fastboot asks `has-slot:P`, which any device with the partition answers
        // with yes or no and a device without it fails.
        let [partition] = values.as_slice() else {
            return Err(fail(
                &line,
                "partition-exists names more than one partition",
            ));
        };
        line.variable = format!("has-slot:{partition}");
        line.values = vec!["yes".into(), "no".into()];
    } else {
        line.variable = variable.to_owned();
        line.values = values;
    }
    Ok(line)
}

/// Values accepted by both `previous` (if any) and `values`: two lines on one variable must
/// both hold, as in Google's client.
fn intersect(
    previous: Option<Vec<String>>,
    values: &[String],
    line: &Line,
) -> Result<Vec<String>, FactoryError> {
    let mut out: Vec<String> = Vec::new();
    for value in values {
        let kept = previous.as_ref().is_none_or(|p| p.contains(value));
        if kept && !out.contains(value) {
            out.push(value.clone());
        }
    }
    if out.is_empty() {
        return Err(fail(
            line,
            "no value meets both this line and an earlier one on the same variable",
        ));
    }
    Ok(out)
}

fn fail(line: &Line, reason: &str) -> FactoryError {
    FactoryError::AndroidInfo {
        line: line.number,
        text: shown(&line.text),
        reason: reason.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> String {
        let path = format!("{}/tests/data/factory/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn requirement(info: &AndroidInfo, variable: &str) -> Vec<String> {
        info.requirements
            .iter()
            .find(|r| r.variable == variable)
            .map(|r| r.values.clone())
            .unwrap_or_else(|| panic!("no requirement {variable}: {info:?}"))
    }

    #[test]
    fn real_pixel_files() {
        let oriole = parse(&sample("oriole-android-info.txt")).unwrap();
        assert_eq!(oriole.boards, ["slider", "whitefin", "oriole", "raven"]);
        assert_eq!(
            requirement(&oriole, "version-bootloader"),
            ["slider-14.5-11677881"]
        );
        assert_eq!(
            requirement(&oriole, "version-baseband"),
            ["g5123b-135085-240517-B-11857288"]
        );
        assert_eq!(oriole.requirements.len(), 3);

        let blueline = parse(&sample("blueline-android-info.txt")).unwrap();
        assert_eq!(blueline.boards, ["crosshatch", "blueline"]);
        assert_eq!(requirement(&blueline, "has-slot:product"), ["yes", "no"]);
        assert_eq!(
            requirement(&blueline, "version-bootloader"),
            ["b1c1-0.1-5578427"]
        );

        let cheetah = parse(&sample("cheetah-android-info.txt")).unwrap();
        assert_eq!(
            requirement(&cheetah, "has-slot:vendor_kernel_boot"),
            ["yes", "no"]
        );
        assert_eq!(cheetah.requirements.len(), 4);

        for name in ["bluejay-android-info.txt", "sargo-android-info.txt"] {
            let info = parse(&sample(name)).unwrap();
            assert_eq!(info.requirements.len(), 3, "{name}");
            assert!(info.dropped.is_empty());
        }
    }

    #[test]
    fn requirements_validate_as_a_manifest_would() {
        for name in [
            "oriole-android-info.txt",
            "blueline-android-info.txt",
            "cheetah-android-info.txt",
        ] {
            let info = parse(&sample(name)).unwrap();
            for r in &info.requirements {
                r.validate()
                    .unwrap_or_else(|e| panic!("{name}: {r:?}: {e}"));
            }
        }
    }

    #[test]
    fn per_product_lines() {
        let one = parse("require board=sunfish\nrequire-for-product:sunfish version-baseband=a|b\nrequire-for-product:other version-baseband=c\n").unwrap();
        assert_eq!(requirement(&one, "version-baseband"), ["a", "b"]);
        assert_eq!(
            one.dropped,
            ["require-for-product:other version-baseband=c"]
        );
        let many =
            parse("require board=a|b\nrequire-for-product:a version-bootloader=1\n").unwrap_err();
        assert!(
            matches!(many, FactoryError::AndroidInfo { line: 2, .. }),
            "{many}"
        );
        // Two lines on one variable must both hold.
        let both =
            parse("board=x\nrequire version-bootloader=1|2\nrequire version-bootloader=2|3\n")
                .unwrap();
        assert_eq!(requirement(&both, "version-bootloader"), ["2"]);
    }

    #[test]
    fn refusals_name_the_line() {
        for (text, line) in [
            ("require board=a\nreject version-bootloader=1\n", 2),
            ("require board=a\nrequire version-bootloader=b1*\n", 2),
            ("require board=a\nnonsense\n", 2),
            ("require board=a|\n", 1),
            ("require board=a\nrequire partition-exists=a|b\n", 2),
            (
                "require board=a\nrequire version-bootloader=1\nrequire version-bootloader=2\n",
                3,
            ),
        ] {
            match parse(text) {
                Err(FactoryError::AndroidInfo { line: l, .. }) => assert_eq!(l, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("require version-bootloader=1\n"),
            Err(FactoryError::NoBoard)
        ));
    }
}
