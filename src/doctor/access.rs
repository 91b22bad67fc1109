//! Whether the user may open the device nodes: login seats (for udev's `uaccess`), groups
//! (for serial ports), and each node's owner and mode.

use std::path::Path;

use super::{Code, Finding, Severity, SystemView, UsbDevice, User, REAPPLY_RULES};
use crate::device::quirks::UsbId;
use crate::platform::Ownership;

/// flashline's rules with `uaccess` swapped for the `plugdev` group, in a file of their
/// own (so `70-flashline.rules` stays as generated), and the user added to that group.
const GROUP_RULES: &str = "flashline udev-rules | sed 's/TAG+=\"uaccess\"/GROUP=\"plugdev\", MODE=\"0660\"/' | sudo tee /etc/udev/rules.d/71-flashline-group.rules >/dev/null && sudo udevadm control --reload && sudo udevadm trigger && sudo usermod -aG plugdev $USER";

/// `uaccess` gives a device to the user of the active session at a login seat, through an
/// ACL. A user with no seat (logged in over SSH, or a system without logind's seats) gets
/// nothing from it.
pub fn seat(view: &SystemView) -> Vec<Finding> {
    let Some(user) = view.ordinary_user() else {
        return Vec::new();
    };
    let seats = view.run.join("systemd/seats");
    let has_seats = std::fs::read_dir(&seats).is_ok_and(|mut e| e.next().is_some());
    if !has_seats {
        return vec![Finding {
            code: Code::NoSeat,
            severity: Severity::Warning,
            what: format!(
                "this system has no login seats ({} is empty or missing: no systemd-logind, or \
                 a headless machine), so the rules' uaccess grants access to nobody",
                seats.display()
            ),
            fix: format!(
                "log in at this computer's own screen; on a headless bench, give the devices to a \
                 group instead, then log out and in: {GROUP_RULES}"
            ),
        }];
    }
    if active_seat_session(view, user.uid) {
        return Vec::new();
    }
    let runtime = view.run.join(format!("user/{}", user.uid));
    let elsewhere = if runtime.is_dir() {
        format!(
            " (you have a session, {} exists, but not at a seat: SSH, say)",
            runtime.display()
        )
    } else {
        String::new()
    };
    vec![Finding {
        code: Code::NoSeatSession,
        severity: Severity::Problem,
        what: format!(
            "user {} has no active session at a login seat{elsewhere}, so the rules' uaccess does \
             not give the devices to this user",
            user.uid
        ),
        fix: "run flashline from the desktop session at this computer's own screen and keyboard \
              (switch to it so it is the active one), then unplug and replug the device"
            .into(),
    }]
}

/// Whether logind records an active session of `uid` at a seat: its session files in
/// `/run/systemd/sessions` hold `UID=`, `SEAT=` and `ACTIVE=` lines.
fn active_seat_session(view: &SystemView, uid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir(view.run.join("systemd/sessions")) else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            return false;
        };
        let value = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .unwrap_or_default()
        };
        value("UID") == uid.to_string() && !value("SEAT").is_empty() && value("ACTIVE") == "1"
    })
}

/// The raw USB node and the ttys of every known device: can the user open them?
pub fn nodes(view: &SystemView, known: &[(&UsbDevice, &UsbId)]) -> Vec<Finding> {
    let Some(user) = view.ordinary_user() else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for (d, id) in known {
        let ttys = d
            .interfaces
            .iter()
            .flat_map(|i| &i.ttys)
            .map(|t| (view.dev.join(t), true));
        let raw = d.node(&view.dev).map(|n| (n, false));
        for (node, is_tty) in raw.into_iter().chain(ttys) {
            let Ok(meta) = std::fs::metadata(&node) else {
                continue;
            };
            let Some(own) = crate::platform::ownership(&meta) else {
                continue;
            };
            if may_open(user, own)
                || (view.live && crate::platform::may_read_write(&node) == Some(true))
            {
                continue;
            }
            let shown = Path::new("/dev").join(node.strip_prefix(&view.dev).unwrap_or(&node));
            let device = format!("{} ({}) at USB port {}", d.id(), id.name, d.name);
            // Serial ports are given to a group (dialout, uucp); the raw USB node is the
            // seat user's through uaccess, and a group there is someone's own rule.
            let group_may = own.gid != 0 && (own.mode >> 3) & 0o6 == 0o6;
            findings.push(if is_tty && group_may {
                let group = group_name(view, own.gid);
                Finding {
                    code: Code::NotInGroup,
                    severity: Severity::Problem,
                    what: format!(
                        "{} of {device} is open to the group {group}, which user {} is not in",
                        shown.display(),
                        user.uid
                    ),
                    fix: format!("sudo usermod -aG {group} $USER, then log out and log in again"),
                }
            } else {
                Finding {
                    code: Code::PermissionDenied,
                    severity: Severity::Problem,
                    what: format!(
                        "user {} cannot open {} of {device} (owner {}, group {}, mode {:04o})",
                        user.uid,
                        shown.display(),
                        own.uid,
                        own.gid,
                        own.mode
                    ),
                    fix: format!(
                        "{REAPPLY_RULES}, or unplug and replug the device; if it stays, see which \
                         rule sets its mode: udevadm test $(udevadm info -q path -n {})",
                        shown.display()
                    ),
                }
            });
        }
    }
    findings
}

/// access(2)'s rule for reading and writing, from owner, group and mode alone.
fn may_open(user: &User, own: Ownership) -> bool {
    let bits = if own.uid == user.uid {
        own.mode >> 6
    } else if user.gids.contains(&own.gid) {
        own.mode >> 3
    } else {
        own.mode
    };
    bits & 0o6 == 0o6
}

/// A group's name from `/etc/group`, or its number.
fn group_name(view: &SystemView, gid: u32) -> String {
    std::fs::read_to_string(view.etc.join("group"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let mut fields = l.split(':');
                let name = fields.next()?;
                (fields.nth(1)? == gid.to_string()).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| gid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_owner_then_group_then_others() {
        let user = User {
            uid: 1000,
            gids: vec![1000, 20],
        };
        let own = |uid, gid, mode| Ownership { uid, gid, mode };
        assert!(may_open(&user, own(1000, 0, 0o600)));
        assert!(
            !may_open(&user, own(1000, 20, 0o066)),
            "the owner's bits decide"
        );
        assert!(may_open(&user, own(0, 20, 0o660)));
        assert!(!may_open(&user, own(0, 21, 0o660)));
        assert!(may_open(&user, own(0, 21, 0o666)));
        assert!(!may_open(&user, own(0, 21, 0o664)));
    }
}
