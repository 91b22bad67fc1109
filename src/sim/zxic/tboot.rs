//! tboot on the device's side: TBootPro commands against the flash (see
//! [`crate::protocol::zxic::tboot`]).

use crate::protocol::zxic::bootrom::{SYNC, TBOOT_SYNC_ACK};
use crate::protocol::zxic::tboot::{
    ACCEPTABLE_CHANGE, INVALID_TABLE, RECV_TABLES, UNACCEPTABLE_CHANGE,
};
use crate::protocol::zxic::{Command, Crc32, PartitionTable, Reply, MAX_REPLY};
use crate::sim::fault::{garbage, Cut, Match, Reaction};

use super::storage::Refusal;
use super::{lock, next_byte, read_exact, Device, Line, Profile};

/// The loader stops serving: the simulator stops, the line failed, or the device resets
/// (reboot, power loss, link drop).
struct Gone;

/// Serves TBootPro until the device resets or the simulator stops.
pub(super) fn run(device: &Device, line: &mut dyn Line) {
    let mut crc = false;
    loop {
        let Some(text) = read_command(device, line) else {
            return;
        };
        device.record(format!("tboot:{text}"));
        let reaction = lock(&device.faults).on_command(&text, Match::Exact);
        let wait = device.cfg.data_timeout;
        match reaction {
            Some(Reaction::Fail) => {
                if send(device, line, &Reply::Fail("injected fault".into())).is_err() {
                    return;
                }
                continue;
            }
            Some(Reaction::Stall) => continue,
            Some(Reaction::Garbage) => {
                if line.write(&garbage(b"\0"), wait).is_err() {
                    return;
                }
                continue;
            }
            Some(Reaction::Reenumerate | Reaction::Drop) => return,
            None => {}
        }
        let outcome = match Command::parse(&text) {
            None => send(device, line, &Reply::Fail("UNKNOWN COMMAND".into())),
            Some(command) => serve(device, line, command, &mut crc),
        };
        if outcome.is_err() {
            return;
        }
    }
}

/// Reads one NUL-terminated command; a lone `0x5A` where a command would start is a sync,
/// answered `0xA7`. Over-long commands are dropped.
fn read_command(device: &Device, line: &mut dyn Line) -> Option<String> {
    let mut text = Vec::new();
    loop {
        let byte = next_byte(line)?;
        match byte {
            SYNC if text.is_empty() => {
                device.record("tboot:sync".into());
                line.write(&[TBOOT_SYNC_ACK], device.cfg.data_timeout)
                    .ok()?;
            }
            0 if text.is_empty() => {}
            0 => return Some(String::from_utf8_lossy(&text).into_owned()),
            _ if text.len() >= MAX_REPLY => {
                device.record("tboot:command too long, dropped".into());
                text.clear();
            }
            _ => text.push(byte),
        }
    }
}

fn send(device: &Device, line: &mut dyn Line, reply: &Reply) -> Result<(), Gone> {
    let mut bytes = Vec::new();
    if device.cfg.profile == Profile::Terse && matches!(reply, Reply::Data(_)) {
        bytes.push(0);
    }
    bytes.extend_from_slice(&reply.to_wire());
    device.record(format!(
        "tboot:reply {}",
        String::from_utf8_lossy(&reply.to_wire()).trim_end_matches('\0')
    ));
    line.write(&bytes, device.cfg.data_timeout)
        .map_err(|_| Gone)
}

fn fail(device: &Device, line: &mut dyn Line, reason: &str) -> Result<(), Gone> {
    send(device, line, &Reply::Fail(reason.into()))
}

fn okay(device: &Device, line: &mut dyn Line, rest: &str) -> Result<(), Gone> {
    send(device, line, &Reply::Okay(rest.into()))
}

fn serve(
    device: &Device,
    line: &mut dyn Line,
    command: Command,
    crc: &mut bool,
) -> Result<(), Gone> {
    let storage = &device.storage;
    match command {
        Command::GetVar(name) => match device.cfg.vars.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => okay(device, line, value),
            None => fail(device, line, "UNKNOWN VARIABLE"),
        },
        Command::CrcOn => {
            *crc = true;
            okay(device, line, "")
        }
        Command::CrcOff => {
            *crc = false;
            okay(device, line, "")
        }
        Command::SetPartitions(len) => set_partitions(device, line, len),
        Command::Erase(what) => erase(device, line, &what),
        Command::Write {
            partition,
            offset,
            len,
        } => match storage.span(&partition, offset, len) {
            Err(refusal) => fail(device, line, refusal.reason()),
            Ok(at) => write(device, line, at, len, *crc),
        },
        Command::Read {
            partition,
            offset,
            len,
        } => match storage.span(&partition, offset, len) {
            Err(refusal) => fail(device, line, refusal.reason()),
            Ok(at) => read(device, line, at, len),
        },
        Command::Reboot => {
            okay(device, line, "REBOOT")?;
            Err(Gone)
        }
    }
}

fn set_partitions(device: &Device, line: &mut dyn Line, len: u32) -> Result<(), Gone> {
    if !(32..=crate::protocol::zxic::partition::WIRE_LEN as u32).contains(&len) {
        return fail(device, line, INVALID_TABLE);
    }
    okay(device, line, RECV_TABLES)?;
    let mut bytes = vec![0u8; len as usize];
    if read_exact(line, &mut bytes, device.cfg.data_timeout).is_none() {
        device.record("tboot:table timed out".into());
        return Ok(());
    }
    let new = match PartitionTable::parse(&bytes) {
        Ok(t)
            if t.entries
                .iter()
                .all(|p| !p.in_flash() || p.end() <= device.storage.flash_size()) =>
        {
            t
        }
        _ => return fail(device, line, INVALID_TABLE),
    };
    let Ok(old) = device.storage.table() else {
        return fail(device, line, INVALID_TABLE);
    };
    let nv_kept = device
        .cfg
        .nv
        .iter()
        .all(|name| match (old.find(name), new.find(name)) {
            (Some(a), Some(b)) => (a.address, a.size, &a.kind) == (b.address, b.size, &b.kind),
            (None, _) => true,
            (Some(_), None) => false,
        });
    if !nv_kept {
        return fail(device, line, UNACCEPTABLE_CHANGE);
    }
    if old.entries == new.entries {
        return okay(device, line, "");
    }
    if device.storage.set_table(&new).is_err() {
        return fail(device, line, INVALID_TABLE);
    }
    fail(device, line, ACCEPTABLE_CHANGE)
}

fn erase(device: &Device, line: &mut dyn Line, what: &str) -> Result<(), Gone> {
    let Ok(table) = device.storage.table() else {
        return fail(device, line, "ERASE");
    };
    let chosen: Vec<_> = table
        .entries
        .iter()
        .filter(|p| p.in_flash())
        .filter(|p| match what {
            "all" => true,
            "auto" => !device.cfg.nv.contains(&p.name),
            name => p.name == name,
        })
        .collect();
    if chosen.is_empty() {
        return fail(device, line, Refusal::Partition.reason());
    }
    for p in chosen {
        if device
            .storage
            .erase(u64::from(p.address), u64::from(p.size))
            .is_err()
        {
            return fail(device, line, "ERASE");
        }
    }
    okay(device, line, "")
}

/// A `compat_write` the device accepted: windows of data written as they arrive, then the
/// CRC (after `CRC ON`) or `OKAY`.
fn write(device: &Device, line: &mut dyn Line, at: u64, len: u32, crc: bool) -> Result<(), Gone> {
    let window = device.cfg.profile.window();
    let mut sum = Crc32::new();
    let mut done = 0u32;
    let mut buf = vec![0u8; 64 * 1024];
    while done < len {
        let n = (len - done).min(window);
        send(device, line, &Reply::Data(n))?;
        let mut left = n;
        while left > 0 {
            let mut piece = (left as usize).min(buf.len());
            {
                let faults = lock(&device.faults);
                for budget in [faults.receive_budget(), faults.write_budget()]
                    .into_iter()
                    .flatten()
                {
                    piece = piece.min(budget.max(1) as usize);
                }
            }
            if read_exact(line, &mut buf[..piece], device.cfg.data_timeout).is_none() {
                device.record("tboot:data timed out; the write stops".into());
                return Ok(());
            }
            let mut faults = lock(&device.faults);
            let flipped = faults.corrupt_within(piece as u64);
            if let Some(i) = flipped {
                buf[i as usize] ^= 0x01;
            }
            let cut = {
                faults.add_received(piece as u64);
                let write_budget = faults.write_budget();
                let stored = write_budget.map_or(piece as u64, |b| b.min(piece as u64)) as usize;
                let offset = at + u64::from(done) + u64::from(n - left);
                if device.storage.write(offset, &buf[..stored]).is_err() {
                    drop(faults);
                    return fail(device, line, "WRITE");
                }
                faults.add_written(stored as u64);
                faults.cut()
            };
            drop(faults);
            sum.update(&buf[..piece]);
            left -= piece as u32;
            if let Some(cut) = cut {
                device.record(match cut {
                    Cut::Power => "tboot:power lost".into(),
                    Cut::Link => "tboot:link dropped".into(),
                });
                return Err(Gone);
            }
        }
        done += n;
    }
    if crc {
        device.record(format!("tboot:crc 0x{:08x}", sum.value()));
        return line
            .write(&sum.value().to_le_bytes(), device.cfg.data_timeout)
            .map_err(|_| Gone);
    }
    okay(device, line, "")
}

/// A `compat_read` the device accepted: `DATA n`, the host's `OKAY`, `n` bytes, the host's
/// `OKAY`, and (stock loaders) a closing `OKAY`.
fn read(device: &Device, line: &mut dyn Line, at: u64, len: u32) -> Result<(), Gone> {
    let n = len.min(device.cfg.profile.window());
    send(device, line, &Reply::Data(n))?;
    if !host_okay(device, line) {
        return Ok(());
    }
    // One transfer for the whole window: a USB line takes a repeated identical write
    // without host input in between for the same offer.
    let mut window = vec![0u8; n as usize];
    if device.storage.read(at, &mut window).is_err() {
        return Err(Gone);
    }
    line.write(&window, device.cfg.data_timeout)
        .map_err(|_| Gone)?;
    if !host_okay(device, line) {
        return Ok(());
    }
    match device.cfg.profile {
        Profile::Stock => okay(device, line, ""),
        Profile::Terse => Ok(()),
    }
}

/// Waits for the host's `OKAY\0` inside a `compat_read`.
fn host_okay(device: &Device, line: &mut dyn Line) -> bool {
    let mut word = [0u8; 5];
    let ok = read_exact(line, &mut word, device.cfg.data_timeout).is_some() && &word == b"OKAY\0";
    if !ok {
        device.record("tboot:read not acknowledged; it stops".into());
    }
    ok
}
