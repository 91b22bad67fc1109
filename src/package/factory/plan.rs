//! Which images of a factory image a package carries, and in which order.
//!
//! The order is Google's (facts from `flash-all.sh` in factory zips and from AOSP
//! `fastboot/fastboot.cpp` and `task.cpp`):
//! 1. the bootloader, then the radio, each followed by `reboot-bootloader` so that the
//!    next step runs on the new firmware;
//! 2. with a `fastboot-info.txt`, its `flash` tasks in its order;
//! 3. without one, Google's built-in list: the boot-critical images first (they may be
//!    written from the bootloader or fastbootd), then the others, the logical ones through
//!    fastbootd after `update-super`.
//!
//! The package says which images are logical (in `super`, from `super_empty.img`); the
//! engine reboots into fastbootd and updates `super` before the first of them, which is
//! what `reboot fastboot` and `update-super` in fastboot-info.txt ask for.
//!
//! Images Google's client does not write on `update` (`*_other.img` for the other slot,
//! `super.img`, `cache.img`, and `userdata`/`metadata` unless wiping) are left out, each
//! with the reason, so the person packing sees what the package does not do.

use std::collections::BTreeSet;

use super::error::FactoryError;
use super::fastboot_info::{FastbootInfo, Task};

/// Images that must be written for the device to boot into the kernel, in the order of
/// Google's list. `dts` is flashed from `dt.img`.
const BOOT_CRITICAL: &[&str] = &[
    "boot",
    "init_boot",
    "dtbo",
    "dts",
    "pvmfw",
    "recovery",
    "vbmeta",
    "vbmeta_system",
    "vbmeta_vendor",
    "vendor_boot",
    "vendor_kernel_boot",
];
/// The rest of what Google's `flashall` writes, in the order of its list.
const NORMAL: &[&str] = &[
    "odm",
    "odm_dlkm",
    "product",
    "system",
    "system_dlkm",
    "system_ext",
    "vendor",
    "vendor_dlkm",
];
/// Images the built-in list requires; the others are optional.
const REQUIRED: &[&str] = &["boot", "system"];
/// Partitions that `fastboot -w` wipes, flashed from an image only with `--wipe`.
pub const WIPED: &[&str] = &["userdata", "metadata", "cache"];

/// One image to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedImage {
    /// The partition (no slot suffix).
    pub partition: String,
    /// The file in the factory image.
    pub file: String,
    /// In `super`: written through fastbootd.
    pub logical: bool,
    /// Followed by `reboot-bootloader` (bootloader and radio firmware).
    pub reboot_bootloader: bool,
}

/// A file of the factory image that the package leaves out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The file (or partition, for tasks without an image).
    pub file: String,
    /// Why.
    pub reason: String,
}

/// What to carry, in order, and what is left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Images in flashing order.
    pub images: Vec<PlannedImage>,
    /// Files left out.
    pub skipped: Vec<Skipped>,
}

/// What the plan is made from.
pub struct Inputs<'a> {
    /// Files at the top of the image zip or product-out folder.
    pub files: &'a BTreeSet<String>,
    /// Firmware found beside the images: (partition, file), bootloader first.
    pub firmware: &'a [(String, String)],
    /// The parsed fastboot-info.txt, if the image has one.
    pub fastboot_info: Option<&'a FastbootInfo>,
    /// Partitions in `super` (names without slot suffix).
    pub logical: &'a BTreeSet<String>,
    /// `--wipe`: also write userdata/metadata/cache images.
    pub wipe: bool,
}

/// Orders the images of a factory image.
pub fn plan(inputs: &Inputs) -> Result<Plan, FactoryError> {
    let mut plan = Plan::default();
    for (partition, file) in inputs.firmware {
        plan.images.push(PlannedImage {
            partition: partition.clone(),
            file: file.clone(),
            logical: false,
            reboot_bootloader: true,
        });
    }
    match inputs.fastboot_info {
        Some(info) => from_fastboot_info(inputs, info, &mut plan)?,
        None => from_builtin_list(inputs, &mut plan)?,
    }
    let used: BTreeSet<String> = plan
        .images
        .iter()
        .map(|i| i.file.clone())
        .chain(plan.skipped.iter().map(|s| s.file.clone()))
        .collect();
    for file in inputs.files {
        let is_image = file.ends_with(".img");
        if is_image && file != "super_empty.img" && !used.contains(file) {
            plan.skipped.push(Skipped {
                file: file.clone(),
                reason: match inputs.fastboot_info {
                    Some(_) => "fastboot-info.txt does not flash it".into(),
                    None => "not an image Google's flashall writes".into(),
                },
            });
        }
    }
    Ok(plan)
}

fn from_fastboot_info(
    inputs: &Inputs,
    info: &FastbootInfo,
    plan: &mut Plan,
) -> Result<(), FactoryError> {
    for (line, task) in &info.tasks {
        let needed_by = || format!("fastboot-info.txt line {line} flashes");
        match task {
            Task::Flash {
                image,
                slot_other: true,
                ..
            } => plan.skipped.push(Skipped {
                file: image.clone(),
                reason: "it is for the other slot (--slot-other); a package writes the slot \
                         being flashed"
                    .into(),
            }),
            Task::Flash {
                partition, image, ..
            } => {
                if !inputs.files.contains(image) {
                    return Err(FactoryError::MissingFile {
                        file: image.clone(),
                        needed_by: needed_by(),
                    });
                }
                push(inputs, plan, partition, image);
            }
            Task::UpdateSuper => {
                if !inputs.files.contains("super_empty.img") {
                    return Err(FactoryError::MissingFile {
                        file: "super_empty.img".into(),
                        needed_by: format!("fastboot-info.txt line {line} (update-super) needs"),
                    });
                }
            }
            // Reboots are the engine's: it enters fastbootd for the logical images and
            // leaves the device as a job ends.
            Task::Reboot(_) => {}
            Task::IfWipe { partition, .. } => wipe(inputs, plan, partition),
            Task::Erase { partition } => {
                return Err(FactoryError::FastbootInfo {
                    line: *line,
                    text: format!("erase {partition}"),
                    reason: "a package writes images; it cannot carry an unconditional erase"
                        .into(),
                })
            }
        }
    }
    Ok(())
}

fn from_builtin_list(inputs: &Inputs, plan: &mut Plan) -> Result<(), FactoryError> {
    for partition in BOOT_CRITICAL.iter().chain(NORMAL) {
        let file = match *partition {
            "dts" => "dt.img".to_owned(),
            other => format!("{other}.img"),
        };
        if inputs.files.contains(&file) {
            push(inputs, plan, partition, &file);
        } else if REQUIRED.contains(partition) {
            return Err(FactoryError::MissingFile {
                file,
                needed_by: "Google's flashall requires".into(),
            });
        }
    }
    for other in ["boot_other.img", "system_other.img", "vendor_other.img"] {
        if inputs.files.contains(other) {
            plan.skipped.push(Skipped {
                file: other.into(),
                reason: "it is for the other slot; a package writes the slot being flashed".into(),
            });
        }
    }
    for partition in WIPED {
        wipe(inputs, plan, partition);
    }
    if inputs.files.contains("super.img") {
        plan.skipped.push(Skipped {
            file: "super.img".into(),
            reason: "Google's flashall writes the logical images, not a whole super image".into(),
        });
    }
    Ok(())
}

/// A partition `fastboot -w` wipes: written from its image with `--wipe`, else left out.
fn wipe(inputs: &Inputs, plan: &mut Plan, partition: &str) {
    let file = format!("{partition}.img");
    let present = inputs.files.contains(&file);
    if inputs.wipe && present {
        push(inputs, plan, partition, &file);
    } else if inputs.wipe {
        plan.skipped.push(Skipped {
            file: partition.to_owned(),
            reason: format!("--wipe asked, but the factory image has no {file} to write"),
        });
    } else if present || inputs.fastboot_info.is_some() {
        plan.skipped.push(Skipped {
            file: if present { file } else { partition.to_owned() },
            reason: "user data is wiped only with --wipe".into(),
        });
    }
}

fn push(inputs: &Inputs, plan: &mut Plan, partition: &str, file: &str) {
    plan.images.push(PlannedImage {
        partition: partition.to_owned(),
        file: file.to_owned(),
        logical: inputs.logical.contains(partition),
        reboot_bootloader: false,
    });
}

#[cfg(test)]
mod tests {
    use super::super::fastboot_info;
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn order(plan: &Plan) -> Vec<String> {
        plan.images
            .iter()
            .map(|i| {
                let mut s = i.partition.clone();
                if i.logical {
                    s.push_str("(logical)");
                }
                if i.reboot_bootloader {
                    s.push_str("+reboot");
                }
                s
            })
            .collect()
    }

    #[test]
    fn builtin_order_is_googles() {
        let files = set(&[
            "vendor.img",
            "system.img",
            "boot.img",
            "vbmeta.img",
            "dtbo.img",
            "product.img",
            "init_boot.img",
            "vendor_boot.img",
            "system_other.img",
            "super_empty.img",
            "userdata.img",
            "android-info.txt",
            "unknown.img",
        ]);
        let firmware = [
            ("bootloader".to_string(), "bootloader-x.img".to_string()),
            ("radio".to_string(), "radio-x.img".to_string()),
        ];
        let logical = set(&["system", "vendor", "product"]);
        let inputs = Inputs {
            files: &files,
            firmware: &firmware,
            fastboot_info: None,
            logical: &logical,
            wipe: false,
        };
        let plan = plan(&inputs).unwrap();
        assert_eq!(
            order(&plan),
            [
                "bootloader+reboot",
                "radio+reboot",
                "boot",
                "init_boot",
                "dtbo",
                "vbmeta",
                "vendor_boot",
                "product(logical)",
                "system(logical)",
                "vendor(logical)",
            ]
        );
        let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(skipped, ["system_other.img", "userdata.img", "unknown.img"]);

        let wiping = Inputs {
            wipe: true,
            ..inputs
        };
        let plan = super::plan(&wiping).unwrap();
        assert_eq!(plan.images.last().unwrap().partition, "userdata");
        assert!(plan
            .skipped
            .iter()
            .any(|s| s.file == "metadata" && s.reason.contains("no metadata.img")));
    }

    #[test]
    fn builtin_list_requires_boot_and_system() {
        let files = set(&["boot.img"]);
        let inputs = Inputs {
            files: &files,
            firmware: &[],
            fastboot_info: None,
            logical: &BTreeSet::new(),
            wipe: false,
        };
        assert!(matches!(
            plan(&inputs),
            Err(FactoryError::MissingFile { file, .. }) if file == "system.img"
        ));
    }

    #[test]
    fn a_real_fastboot_info_file_orders_a_real_layout() {
        let path = format!(
            "{}/tests/data/factory/samsung-sm8250-fastboot-info.txt",
            env!("CARGO_MANIFEST_DIR")
        );
        let info = fastboot_info::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let files = set(&[
            "boot.img",
            "dtbo.img",
            "recovery.img",
            "vbmeta.img",
            "super_empty.img",
            "system.img",
            "system_ext.img",
            "odm.img",
            "product.img",
            "vendor.img",
        ]);
        let logical = set(&["system", "system_ext", "odm", "product", "vendor"]);
        let inputs = Inputs {
            files: &files,
            firmware: &[],
            fastboot_info: Some(&info),
            logical: &logical,
            wipe: false,
        };
        let plan = plan(&inputs).unwrap();
        assert_eq!(
            order(&plan),
            [
                "boot",
                "dtbo",
                "recovery",
                "vbmeta_samsung",
                "system(logical)",
                "system_ext(logical)",
                "odm(logical)",
                "product(logical)",
                "vendor(logical)",
            ]
        );
        assert_eq!(plan.images[3].file, "vbmeta.img");
        let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(skipped, ["cache", "userdata", "metadata"]);
    }

    #[test]
    fn fastboot_info_order_wins() {
        let info = fastboot_info::parse(
            "version 1\nflash vbmeta\nflash boot\nreboot fastboot\nupdate-super\nflash vendor\nflash system\nflash --slot-other system system_other.img\nif-wipe erase userdata\n",
        )
        .unwrap();
        let files = set(&[
            "boot.img",
            "vbmeta.img",
            "system.img",
            "vendor.img",
            "system_other.img",
            "super_empty.img",
            "dtbo.img",
        ]);
        let logical = set(&["system", "vendor"]);
        let inputs = Inputs {
            files: &files,
            firmware: &[],
            fastboot_info: Some(&info),
            logical: &logical,
            wipe: false,
        };
        let plan = plan(&inputs).unwrap();
        assert_eq!(
            order(&plan),
            ["vbmeta", "boot", "vendor(logical)", "system(logical)"]
        );
        let skipped: Vec<&str> = plan.skipped.iter().map(|s| s.file.as_str()).collect();
        assert_eq!(skipped, ["system_other.img", "userdata", "dtbo.img"]);

        let missing = set(&["boot.img", "vbmeta.img", "system.img", "vendor.img"]);
        let inputs = Inputs {
            files: &missing,
            ..inputs
        };
        assert!(matches!(
            super::plan(&inputs),
            Err(FactoryError::MissingFile { file, .. }) if file == "super_empty.img"
        ));
    }
}
