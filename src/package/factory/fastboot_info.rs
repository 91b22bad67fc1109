//! `fastboot-info.txt`: the flashing steps a build ships beside its images, which Google's
//! `fastboot update` and `flashall` follow instead of their built-in image list.
//!
//! Syntax (facts from AOSP `fastboot/task.cpp`, `fastboot.cpp` and their tests): one task
//! per line, words separated by spaces; the first task is `version N` (or `N.M`), and a
//! client refuses a file newer than it knows (version 1 is the only one defined);
//! - `flash [--apply-vbmeta] [--slot-other] PARTITION [IMAGE]`, the image defaulting to
//!   `PARTITION.img`;
//! - `reboot`, `reboot bootloader`, `reboot fastboot`;
//! - `update-super`;
//! - `erase PARTITION`;
//! - `if-wipe erase|format PARTITION`: only when the user asked to wipe.
//!
//! Blank lines and lines starting with `#` are comments. Anything else is an error naming
//! the line: a step flashline does not understand is never skipped silently.

use super::error::{shown, FactoryError};
use crate::package::names;

/// The newest fastboot-info.txt version understood.
pub const VERSION: u32 = 1;

/// Where a `reboot` task goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    /// `reboot`: into Android.
    System,
    /// `reboot bootloader`.
    Bootloader,
    /// `reboot fastboot`: into fastbootd.
    Fastboot,
}

/// How an `if-wipe` task wipes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wipe {
    /// `if-wipe erase P`.
    Erase,
    /// `if-wipe format P`.
    Format,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// `flash`.
    Flash {
        /// The partition, without slot suffix.
        partition: String,
        /// The image file in the factory image.
        image: String,
        /// `--apply-vbmeta`: the client's vbmeta flags (`--disable-verity`, …) apply to
        /// this image; without such flags it changes nothing.
        apply_vbmeta: bool,
        /// `--slot-other`: written to the slot that is not being flashed.
        slot_other: bool,
    },
    /// `reboot …`.
    Reboot(Reboot),
    /// `update-super`: rewrite super's metadata from `super_empty.img`, in fastbootd.
    UpdateSuper,
    /// `erase P`.
    Erase {
        /// The partition.
        partition: String,
    },
    /// `if-wipe …`.
    IfWipe {
        /// Erase or format.
        how: Wipe,
        /// The partition.
        partition: String,
    },
}

/// A parsed fastboot-info.txt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastbootInfo {
    /// The declared version.
    pub version: u32,
    /// The tasks with their 1-based line numbers, in file order.
    pub tasks: Vec<(usize, Task)>,
}

/// Parses fastboot-info.txt.
pub fn parse(text: &str) -> Result<FastbootInfo, FactoryError> {
    let mut version = None;
    let mut tasks = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: &str| FactoryError::FastbootInfo {
            line: number,
            text: shown(line),
            reason: reason.to_owned(),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words[0] == "version" {
            if version.is_some() || !tasks.is_empty() {
                return Err(fail("`version` must be the first task, and only once"));
            }
            version = Some(parse_version(&words).map_err(|reason| fail(&reason))?);
            continue;
        }
        if version.is_none() {
            return Err(fail("the first task must be `version N`"));
        }
        let task = parse_task(&words).map_err(|reason| fail(&reason))?;
        tasks.push((number, task));
    }
    let version = version.ok_or_else(|| FactoryError::FastbootInfo {
        line: 0,
        text: String::new(),
        reason: "the file has no `version` line".into(),
    })?;
    Ok(FastbootInfo { version, tasks })
}

/// `version N` or `version N.M`; N at most [`VERSION`].
fn parse_version(words: &[&str]) -> Result<u32, String> {
    let [_, number] = words else {
        return Err("`version` takes one number".into());
    };
    let (major, minor) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |s: &str| !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Err(format!("{number:?} is not a version number"));
    }
    let major: u32 = major.parse().map_err(|_| "version out of range")?;
    if major > VERSION {
        return Err(format!(
            "version {major} is newer than the version {VERSION} flashline understands"
        ));
    }
    Ok(major)
}

fn parse_task(words: &[&str]) -> Result<Task, String> {
    let partition = |name: &str| -> Result<String, String> {
        names::identifier("partition name", name).map_err(|e| e.to_string())?;
        Ok(name.to_owned())
    };
    match words {
        ["flash", rest @ ..] => {
            let mut apply_vbmeta = false;
            let mut slot_other = false;
            let mut positional = Vec::new();
            for word in rest {
                match *word {
                    "--apply-vbmeta" => apply_vbmeta = true,
                    "--slot-other" => slot_other = true,
                    flag if flag.starts_with("--") => {
                        return Err(format!("unknown flash option {flag:?}"))
                    }
                    other => positional.push(other),
                }
            }
            let (name, image) = match positional.as_slice() {
                [name] => (*name, format!("{name}.img")),
                [name, image] => (*name, (*image).to_owned()),
                _ => return Err("`flash` takes a partition and at most one image".into()),
            };
            names::identifier("image file name", &image).map_err(|e| e.to_string())?;
            Ok(Task::Flash {
                partition: partition(name)?,
                image,
                apply_vbmeta,
                slot_other,
            })
        }
        ["reboot"] => Ok(Task::Reboot(Reboot::System)),
        ["reboot", "bootloader"] => Ok(Task::Reboot(Reboot::Bootloader)),
        ["reboot", "fastboot"] => Ok(Task::Reboot(Reboot::Fastboot)),
        ["reboot", ..] => Err("`reboot` goes to bootloader or fastboot, or takes nothing".into()),
        ["update-super"] => Ok(Task::UpdateSuper),
        ["erase", name] => Ok(Task::Erase {
            partition: partition(name)?,
        }),
        ["if-wipe", how @ ("erase" | "format"), name] => Ok(Task::IfWipe {
            how: if *how == "erase" {
                Wipe::Erase
            } else {
                Wipe::Format
            },
            partition: partition(name)?,
        }),
        [command, ..] => Err(format!(
            "{command:?} is not a fastboot-info task or its arguments are wrong"
        )),
        [] => Err("empty task".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> String {
        let path = format!("{}/tests/data/factory/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn flash(partition: &str, image: &str) -> Task {
        Task::Flash {
            partition: partition.into(),
            image: image.into(),
            apply_vbmeta: false,
            slot_other: false,
        }
    }

    #[test]
    fn real_files() {
        let info = parse(&sample("samsung-sm8250-fastboot-info.txt")).unwrap();
        assert_eq!(info.version, 1);
        let tasks: Vec<Task> = info.tasks.iter().map(|(_, t)| t.clone()).collect();
        assert_eq!(tasks.len(), 14);
        assert_eq!(tasks[0], flash("boot", "boot.img"));
        assert_eq!(
            tasks[3],
            Task::Flash {
                partition: "vbmeta_samsung".into(),
                image: "vbmeta.img".into(),
                apply_vbmeta: true,
                slot_other: false,
            }
        );
        assert_eq!(tasks[4], Task::Reboot(Reboot::Fastboot));
        assert_eq!(tasks[5], Task::UpdateSuper);
        assert_eq!(
            tasks[13],
            Task::IfWipe {
                how: Wipe::Erase,
                partition: "metadata".into()
            }
        );
        assert_eq!(info.tasks[5].0, 7);

        let info = parse(&sample("guacamole-fastboot-info.txt")).unwrap();
        assert_eq!(info.tasks.len(), 7);
        assert_eq!(info.tasks[3].1, flash("system", "system.img"));
    }

    #[test]
    fn google_forms() {
        let info = parse(
            "# comment\nversion 1.0\nflash --slot-other system system_other.img\n\nreboot bootloader\nreboot\nerase cache\nif-wipe format userdata\n",
        )
        .unwrap();
        assert_eq!(
            info.tasks[0],
            (
                3,
                Task::Flash {
                    partition: "system".into(),
                    image: "system_other.img".into(),
                    apply_vbmeta: false,
                    slot_other: true,
                }
            )
        );
        assert_eq!(info.tasks[1].1, Task::Reboot(Reboot::Bootloader));
        assert_eq!(info.tasks[2].1, Task::Reboot(Reboot::System));
        assert_eq!(
            info.tasks[3].1,
            Task::Erase {
                partition: "cache".into()
            }
        );
    }

    #[test]
    fn refusals_name_the_line() {
        // The malformed lines of AOSP's own parser tests, and flashline's stricter rules.
        for bad in [
            "flash",
            "flash --slot-other --apply-vbmeta",
            "flash --apply-vbmeta",
            "if-wipe",
            "if-wipe flash",
            "wipe dtbo",
            "update-super dtbo",
            "flash system system.img system",
            "reboot bootloader fastboot",
            "erase",
            "erase dtbo dtbo",
            "wipe-super super_empty.img",
            "flash --force boot",
            "flash ../boot",
            "flash boot ../../etc/passwd",
            "reboot recovery",
            "version 1",
        ] {
            match parse(&format!("version 1\nflash boot\n{bad}\n")) {
                Err(FactoryError::FastbootInfo { line: 3, .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        for bad_version in [
            "version",
            "version .01",
            "version x1",
            "version 1.0.1",
            "version 1.",
            "version 1.0 2.0",
            "version 2",
            "version 1 2",
        ] {
            assert!(
                matches!(
                    parse(&format!("{bad_version}\n")),
                    Err(FactoryError::FastbootInfo { line: 1, .. })
                ),
                "{bad_version}"
            );
        }
        assert!(matches!(
            parse("flash boot\n"),
            Err(FactoryError::FastbootInfo { line: 1, .. })
        ));
        assert!(matches!(
            parse("# nothing\n"),
            Err(FactoryError::FastbootInfo { line: 0, .. })
        ));
    }
}
