//! `flashline fastboot <verb>`: the fastboot verbs technicians type by hand, passed through
//! to one device, with the device's own lines and answer printed (escaped) as it sent them.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::render::say_err;
use super::{
    load_trust, pick_device, TrustArg, EXIT_DEVICE_ERROR, EXIT_PACKAGE_REJECTED,
    EXIT_PREFLIGHT_REFUSED,
};
use crate::device::fastboot::verbs::SlotChoice;
use crate::device::printable;
use crate::device::quirks::Quirks;
use crate::engine::verbs::{BootImage, LockChange, Session, VerbError, VerbEvent, WipeConfirmed};

#[derive(Args)]
pub(super) struct FastbootArgs {
    #[command(subcommand)]
    verb: Verb,
    /// `tcp:HOST:PORT`, `usb:BUS-PORT` or a USB serial number; found automatically when
    /// exactly one fastboot device is attached.
    #[arg(long, global = true)]
    device: Option<String>,
    /// Print events as JSON lines.
    #[arg(long, global = true)]
    json: bool,
    /// Give up on a device that stays silent this long when it owes an answer (e.g. `10s`).
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
}

#[derive(Subcommand)]
enum Verb {
    /// Read one variable (`getvar:<name>`), e.g. `product` or `partition-size:boot_a`.
    Getvar {
        /// The variable.
        name: String,
    },
    /// Send an OEM command (`oem <args…>`) and print what the device answers.
    Oem {
        /// The command's words, e.g. `device-info`.
        #[arg(required = true)]
        args: Vec<String>,
        /// `oem lock`/`oem unlock…` wipe all user data on the phone: say you mean it.
        #[arg(long)]
        yes_wipe_user_data: bool,
    },
    /// Erase a partition (`erase:<partition>`).
    Erase {
        /// The partition (without slot suffix when using --slot).
        partition: String,
        /// `a`, `b`, `all` or `other` (the slot after the current one); without it, the
        /// current slot's partition of a slotted one.
        #[arg(long)]
        slot: Option<SlotChoice>,
    },
    /// Format a partition, as Google's fastboot does: build an empty filesystem of the
    /// type and size the device reports (ext4 with mke2fs, f2fs with mkfs.f2fs) on this
    /// computer and flash it. Everything on the partition is lost.
    Format {
        /// The partition.
        partition: String,
        /// As for erase.
        #[arg(long)]
        slot: Option<SlotChoice>,
        /// Confirm that everything on the partition will be wiped (otherwise asked).
        #[arg(long)]
        yes_wipe_user_data: bool,
    },
    /// Boot an image of a signed package from RAM without flashing it; `boot` is sent only
    /// if the bytes sent were exactly the signed ones.
    Boot {
        /// The package.
        package: PathBuf,
        /// The image in the package (its partition name).
        #[arg(long, default_value = "boot")]
        image: String,
        #[command(flatten)]
        trust: TrustArg,
    },
    /// Lock or unlock the bootloader (`flashing lock|unlock`). Either one wipes all user
    /// data on the phone; the phone may also ask on its screen.
    Flashing {
        /// `lock` or `unlock`.
        #[arg(value_parser = ["lock", "unlock"])]
        action: String,
        /// Confirm that all user data on the phone will be wiped (otherwise asked).
        #[arg(long)]
        yes_wipe_user_data: bool,
    },
}

/// Runs one verb.
pub(super) fn run(args: FastbootArgs) -> Result<ExitCode> {
    let wipe = match &args.verb {
        Verb::Flashing {
            action,
            yes_wipe_user_data,
        } => match confirm_wipe(
            &lock_warning(lock_change(action).command()),
            *yes_wipe_user_data,
        ) {
            Some(token) => Some(token),
            None => return Ok(ExitCode::from(2)),
        },
        Verb::Oem {
            args: words,
            yes_wipe_user_data,
        } if crate::engine::verbs::oem_changes_lock(words) => {
            match confirm_wipe(
                &lock_warning(&format!("oem {}", words.join(" "))),
                *yes_wipe_user_data,
            ) {
                Some(token) => Some(token),
                None => return Ok(ExitCode::from(2)),
            }
        }
        Verb::Format {
            partition,
            yes_wipe_user_data,
            ..
        } => {
            let warning = format!(
                "`format {partition}` replaces everything on {partition} with an empty \
                 filesystem: ALL DATA ON IT IS WIPED."
            );
            match confirm_wipe(&warning, *yes_wipe_user_data) {
                Some(token) => Some(token),
                None => return Ok(ExitCode::from(2)),
            }
        }
        _ => None,
    };
    let address = match args.device {
        Some(a) => a,
        None => match pick_device(
            &Quirks::builtin(),
            |m| m == crate::device::Mode::Fastboot,
            "no device in fastboot mode is attached; connect one, or name it with --device",
        ) {
            Ok(a) => a,
            Err(code) => return Ok(code),
        },
    };
    let json = args.json;
    let mut emit = |event: VerbEvent| show(&event, json);
    // A package is verified before the device is opened.
    let boot = match &args.verb {
        Verb::Boot {
            package,
            image,
            trust,
        } => Some(
            load_trust(trust)
                .map_err(|e| VerbError::Refused(e.to_string()))
                .and_then(|trust| BootImage::open(package, &trust, image)),
        ),
        _ => None,
    }
    .transpose();
    let result =
        boot.and_then(|boot| Session::open(&address, args.timeout).map(|session| (session, boot)));
    let result = result.and_then(|(mut session, boot)| match args.verb {
        Verb::Getvar { name } => session.getvar(&name, &mut emit),
        Verb::Oem { args, .. } => session.oem(&args, wipe, &mut emit),
        Verb::Erase { partition, slot } => session.erase(&partition, slot, &mut emit),
        Verb::Format {
            partition, slot, ..
        } => {
            let wipe = wipe.ok_or_else(|| VerbError::Refused("not confirmed".into()))?;
            session.format(&partition, slot, wipe, &mut emit)
        }
        Verb::Boot { .. } => match &boot {
            Some(image) => session.boot(image, &mut emit),
            None => Err(VerbError::Refused("no image to boot".into())),
        },
        Verb::Flashing { action, .. } => {
            let wipe = wipe.ok_or_else(|| VerbError::Refused("not confirmed".into()))?;
            session.flashing(lock_change(&action), wipe, &mut emit)
        }
    });
    Ok(match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_DEVICE_ERROR),
        Err(e) => {
            say_err!("error: {}", printable(&e.to_string()));
            ExitCode::from(match e {
                VerbError::Device(_) => EXIT_DEVICE_ERROR,
                VerbError::Package(_) => EXIT_PACKAGE_REJECTED,
                VerbError::Slot(_) => 2,
                VerbError::Refused(_) => EXIT_PREFLIGHT_REFUSED,
            })
        }
    })
}

/// `lock` or `unlock`, as clap already checked.
fn lock_change(action: &str) -> LockChange {
    if action == "lock" {
        LockChange::Lock
    } else {
        LockChange::Unlock
    }
}

/// What `command`, which locks or unlocks the bootloader, does to the phone's data.
fn lock_warning(command: &str) -> String {
    format!(
        "`{command}` changes the bootloader's lock state, and the phone WIPES ALL USER DATA \
         (apps, photos, accounts) when it does."
    )
}

/// The user's consent to the wipe `warning` describes: the flag, or a typed `wipe` at an
/// interactive prompt. Without either, says why nothing was sent.
fn confirm_wipe(warning: &str, confirmed: bool) -> Option<WipeConfirmed> {
    if confirmed {
        say_err!("{warning} Confirmed with --yes-wipe-user-data.");
        return Some(WipeConfirmed::by_user());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        say_err!("{warning} Confirm with --yes-wipe-user-data; nothing was sent.");
        return None;
    }
    eprint!("{warning}\nType `wipe` to go on: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    if stdin.lock().read_line(&mut answer).is_ok() && answer.trim() == "wipe" {
        return Some(WipeConfirmed::by_user());
    }
    say_err!("not confirmed; nothing was sent");
    None
}

/// Prints one event: a JSON line, or the device's words as Google's client shows them.
fn show(event: &VerbEvent, json: bool) {
    if json {
        if let Ok(line) = serde_json::to_string(event) {
            println!("{line}");
        }
        return;
    }
    match event {
        VerbEvent::Sent { .. } => {}
        VerbEvent::Info { text } => println!("(bootloader) {}", printable(text)),
        VerbEvent::Okay { command, text } => match command.strip_prefix("getvar:") {
            Some(name) => println!("{}: {}", printable(name), printable(text)),
            None if text.is_empty() => println!("{}: OKAY", printable(command)),
            None => println!("{}: OKAY {}", printable(command), printable(text)),
        },
        VerbEvent::Failed { command, reason } => {
            println!(
                "{}: FAILED (remote: '{}')",
                printable(command),
                printable(reason)
            )
        }
        VerbEvent::FilesystemBuilt {
            partition,
            filesystem,
            size,
            command,
            sha256,
        } => println!(
            "format: an empty {filesystem} filesystem of {size} bytes for {} built here \
             ({command}), sent as a sparse image (sha256 {sha256})",
            printable(partition)
        ),
        VerbEvent::ImageVerified { image, sha256 } => {
            println!(
                "image {} sent as signed (sha256 {sha256})",
                printable(image)
            )
        }
    }
}
