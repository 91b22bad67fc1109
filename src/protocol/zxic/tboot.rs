//! TBootPro, the text protocol of the download loader (tboot).
//!
//! Every command and every reply is ASCII ended by one NUL. After a sync (`0x5A` →
//! `0xA7`):
//!
//! | host | device |
//! |---|---|
//! | `getvar <name>` | `OKAY <value>` |
//! | `CRC ON` | `OKAY` |
//! | `set partitions 1000`, then 4096 table bytes | `OKAY RECV_TABLES`, then `OKAY` (same table), `FAIL ACCEPTABLE_PARTITION_CHANGE` (NV kept), `FAIL UNACCEPTABLE_PARTITION_CHANGE` (NV would move) or `FAIL INVALID_PARTITION_TABLE` |
//! | `erase auto` / `erase all` / `erase <p>` | `OKAY` |
//! | `compat_write <p> <offset %08x> <length %x>` | `DATA <n %08X>` per window, the host sends `n` bytes; at the end `OKAY`, or after `CRC ON` the 4-byte CRC |
//! | `compat_read <p> <offset %08X> <length %08X>` | `DATA <n>`; host `OKAY`; `n` bytes; host `OKAY`; maybe `OKAY` |
//! | `reboot` | `OKAY REBOOT` |
//!
//! Decisions on what the sources leave open, each with its reason:
//!
//! * `compat_write`'s arguments are the vendor flasher's (zte_download.c:
//!   `"compat_write %s %08x %0x"`, partition, offset, length); zxdl's `<part> <len> <crc>`
//!   is its own guess. flashline sends one `compat_write` per 2 MiB window of an image, so
//!   that after `CRC ON` every window is checked on its own (the vendor flasher compares one
//!   CRC per command).
//! * The CRC after `CRC ON` is read as little-endian: the vendor flasher reads the 4 raw
//!   bytes straight into a host integer and compares it on x86, a little-endian machine.
//! * `compat_read`'s arguments and exchange are zxdl's (proto.c, `zx_read_partition`; the
//!   vendor flasher never reads): `%08X` offset and length, `DATA <n>` with `n` at most
//!   the length, `OKAY` before and after the bytes, and a closing `OKAY` some builds send
//!   and others do not, waited for briefly.
//! * `getvar` names are zxdl's (`plat`, `nv`, `num`, `boot`); their real values are not
//!   public, so flashline shows them as the device's words and decides nothing on them.
//! * `set partitions` counts bytes in hex, as the vendor flasher does (`1000`, 4096 bytes);
//!   zxdl's entry count is its own guess.
//! * A reply that starts with a stray NUL is read past it, as the vendor flasher shifts
//!   `\0DATA …`.

use std::io::{Read, Write};
use std::time::Duration;

use super::bootrom::{SYNC, TBOOT_SYNC_ACK};
use super::crc::Crc32;
use super::{Link, ZxicError, WINDOW};
use crate::transport::{Transport, TransportError};

/// How long `erase auto` / `erase all` may take (zxdl waits 80 s for the first, the vendor
/// flasher four minutes).
pub const ERASE_WAIT: Duration = Duration::from_secs(240);
/// How long the closing `OKAY` of a `compat_read` is waited for before it is taken as one
/// of the builds that send none.
const CLOSING_OKAY_WAIT: Duration = Duration::from_millis(150);
/// Longest partition name accepted in a command (partition.bin holds 15 characters).
const MAX_NAME: usize = 15;

/// A TBootPro command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `getvar <name>`.
    GetVar(String),
    /// `CRC ON`.
    CrcOn,
    /// `CRC OFF`.
    CrcOff,
    /// `set partitions <bytes, hex>`.
    SetPartitions(u32),
    /// `compat_write <partition> <offset> <length>`.
    Write {
        /// Partition name.
        partition: String,
        /// Offset in the partition.
        offset: u32,
        /// Bytes.
        len: u32,
    },
    /// `compat_read <partition> <offset> <length>`.
    Read {
        /// Partition name.
        partition: String,
        /// Offset in the partition.
        offset: u32,
        /// Bytes.
        len: u32,
    },
    /// `erase <what>`: `all`, `auto` or a partition.
    Erase(String),
    /// `reboot`.
    Reboot,
}

impl Command {
    /// The command's text, without its NUL.
    pub fn text(&self) -> String {
        match self {
            Command::GetVar(name) => format!("getvar {name}"),
            Command::CrcOn => "CRC ON".into(),
            Command::CrcOff => "CRC OFF".into(),
            Command::SetPartitions(len) => format!("set partitions {len:x}"),
            Command::Write {
                partition,
                offset,
                len,
            } => format!("compat_write {partition} {offset:08x} {len:x}"),
            Command::Read {
                partition,
                offset,
                len,
            } => format!("compat_read {partition} {offset:08X} {len:08X}"),
            Command::Erase(what) => format!("erase {what}"),
            Command::Reboot => "reboot".into(),
        }
    }

    /// Parses a command's text (the device's side); `None` for anything else.
    pub fn parse(text: &str) -> Option<Command> {
        let words: Vec<&str> = text.split(' ').collect();
        let hex = |w: &str| u32::from_str_radix(w, 16).ok();
        let name = |w: &str| {
            (!w.is_empty()
                && w.len() <= MAX_NAME
                && w.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
            .then(|| w.to_string())
        };
        Some(match words.as_slice() {
            ["getvar", n] => Command::GetVar(name(n)?),
            ["CRC", "ON"] => Command::CrcOn,
            ["CRC", "OFF"] => Command::CrcOff,
            ["set", "partitions", n] => Command::SetPartitions(hex(n)?),
            ["compat_write", p, o, l] => Command::Write {
                partition: name(p)?,
                offset: hex(o)?,
                len: hex(l)?,
            },
            ["compat_read", p, o, l] => Command::Read {
                partition: name(p)?,
                offset: hex(o)?,
                len: hex(l)?,
            },
            ["erase", what] => Command::Erase(name(what)?),
            ["reboot"] => Command::Reboot,
            _ => return None,
        })
    }

    /// Checks that names going into a command are plain partition names.
    fn check(&self) -> Result<(), ZxicError> {
        if Command::parse(&self.text()).as_ref() == Some(self) {
            Ok(())
        } else {
            Err(ZxicError::TooLarge(format!(
                "`{}` is not a command flashline sends (partition names are up to {MAX_NAME} letters, digits, _ or -)",
                self.text()
            )))
        }
    }
}

/// A TBootPro reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OKAY`, with the rest of the line (maybe empty).
    Okay(String),
    /// `FAIL <reason>`.
    Fail(String),
    /// `DATA <n>`: send or receive `n` bytes.
    Data(u32),
}

impl Reply {
    /// Parses a reply's text; `None` for anything the protocol does not have. `DATA`'s
    /// number is hex after optional spaces, as the vendor flasher's `strtoul(…, 16)` reads it.
    pub fn parse(text: &str) -> Option<Reply> {
        if let Some(rest) = text.strip_prefix("OKAY") {
            return Some(Reply::Okay(rest.trim_start().to_string()));
        }
        if let Some(rest) = text.strip_prefix("FAIL") {
            return Some(Reply::Fail(rest.trim_start().to_string()));
        }
        let digits = text.strip_prefix("DATA")?.trim_start();
        (!digits.is_empty() && digits.len() <= 8)
            .then(|| u32::from_str_radix(digits, 16).ok())
            .flatten()
            .map(Reply::Data)
    }

    /// The reply as the device sends it, NUL included.
    pub fn to_wire(&self) -> Vec<u8> {
        let mut text = match self {
            Reply::Okay(rest) if rest.is_empty() => "OKAY".to_string(),
            Reply::Okay(rest) => format!("OKAY {rest}"),
            Reply::Fail(reason) => format!("FAIL {reason}"),
            Reply::Data(n) => format!("DATA {n:08X}"),
        }
        .into_bytes();
        text.push(0);
        text
    }
}

/// What the device said about a new partition table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableVerdict {
    /// `OKAY`: the device already has this table.
    Same,
    /// `FAIL ACCEPTABLE_PARTITION_CHANGE`: the table differs but keeps NV where it is; the
    /// host is to send `erase auto` before writing.
    AcceptableChange,
}

/// `FAIL ACCEPTABLE_PARTITION_CHANGE`'s reason.
pub const ACCEPTABLE_CHANGE: &str = "ACCEPTABLE_PARTITION_CHANGE";
/// `FAIL UNACCEPTABLE_PARTITION_CHANGE`'s reason.
pub const UNACCEPTABLE_CHANGE: &str = "UNACCEPTABLE_PARTITION_CHANGE";
/// `FAIL INVALID_PARTITION_TABLE`'s reason.
pub const INVALID_TABLE: &str = "INVALID_PARTITION_TABLE";
/// `OKAY RECV_TABLES`'s rest.
pub const RECV_TABLES: &str = "RECV_TABLES";

impl<T: Transport> Link<T> {
    /// Syncs with tboot: `0x5A` → `0xA7`.
    pub fn sync_tboot(&mut self) -> Result<(), ZxicError> {
        self.purge();
        self.send(&[SYNC])?;
        let got = self.byte_within(self.timeout())?;
        if got == TBOOT_SYNC_ACK {
            Ok(())
        } else {
            Err(ZxicError::Ack {
                step: "sync with tboot",
                expected: TBOOT_SYNC_ACK,
                got,
            })
        }
    }

    /// Sends `command` (NUL-terminated) and reads one reply within `wait`.
    fn exchange(&mut self, command: &Command, wait: Duration) -> Result<Reply, ZxicError> {
        command.check()?;
        let mut bytes = command.text().into_bytes();
        bytes.push(0);
        self.send(&bytes)?;
        self.reply(command, wait)
    }

    /// Reads one reply to `command`.
    fn reply(&mut self, command: &Command, wait: Duration) -> Result<Reply, ZxicError> {
        let text = self.read_text(wait)?;
        Reply::parse(&text).ok_or_else(|| ZxicError::Unexpected {
            command: command.text(),
            reply: text,
        })
    }

    /// Expects `OKAY` (any rest) to `command`; `FAIL` is [`ZxicError::Refused`].
    fn okay(&mut self, command: &Command, reply: Reply) -> Result<String, ZxicError> {
        match reply {
            Reply::Okay(rest) => Ok(rest),
            Reply::Fail(reason) => Err(ZxicError::Refused {
                command: command.text(),
                reason,
            }),
            other => Err(ZxicError::Unexpected {
                command: command.text(),
                reply: String::from_utf8_lossy(&other.to_wire())
                    .trim_end_matches('\0')
                    .into(),
            }),
        }
    }

    /// `getvar <name>`: the device's words, or `None` if it refuses the name.
    pub fn getvar(&mut self, name: &str) -> Result<Option<String>, ZxicError> {
        let command = Command::GetVar(name.into());
        match self.exchange(&command, self.timeout())? {
            Reply::Fail(_) => Ok(None),
            reply => self.okay(&command, reply).map(Some),
        }
    }

    /// `CRC ON`: whether the device will return a CRC after each `compat_write`. A device
    /// that refuses it is flashed without (the vendor flasher carries on too) and the caller
    /// checks by reading back.
    pub fn crc_on(&mut self) -> Result<bool, ZxicError> {
        match self.exchange(&Command::CrcOn, self.timeout())? {
            Reply::Okay(_) => Ok(true),
            Reply::Fail(_) => Ok(false),
            other => self.okay(&Command::CrcOn, other).map(|_| false),
        }
    }

    /// `set partitions 1000` and the table, padded to 4096 bytes (`wire`). A refused table
    /// is [`ZxicError::TableRefused`], naming the device's reason.
    pub fn set_partitions(&mut self, wire: &[u8]) -> Result<TableVerdict, ZxicError> {
        let len = u32::try_from(wire.len())
            .map_err(|_| ZxicError::TooLarge("the partition table is too large".into()))?;
        let command = Command::SetPartitions(len);
        let reply = self.exchange(&command, self.timeout())?;
        let rest = self.okay(&command, reply)?;
        if rest != RECV_TABLES {
            return Err(ZxicError::Unexpected {
                command: command.text(),
                reply: format!("OKAY {rest}"),
            });
        }
        self.send(wire)?;
        match self.reply(&command, self.timeout())? {
            Reply::Okay(_) => Ok(TableVerdict::Same),
            Reply::Fail(reason) if reason == ACCEPTABLE_CHANGE => {
                Ok(TableVerdict::AcceptableChange)
            }
            Reply::Fail(reason) => Err(ZxicError::TableRefused(reason)),
            Reply::Data(n) => Err(ZxicError::Unexpected {
                command: command.text(),
                reply: format!("DATA {n:08X}"),
            }),
        }
    }

    /// `erase <what>` (`auto`, `all` or a partition).
    pub fn erase(&mut self, what: &str) -> Result<(), ZxicError> {
        let command = Command::Erase(what.into());
        let wait = ERASE_WAIT.max(self.timeout());
        let reply = self.exchange(&command, wait)?;
        self.okay(&command, reply).map(|_| ())
    }

    /// Writes `len` bytes from `data` at `offset` of `partition` with one `compat_write`,
    /// in the windows the device asks for. With `crc`, the device's CRC must equal the CRC
    /// of the bytes sent ([`ZxicError::Crc`] otherwise); without, it must say `OKAY`.
    /// `progress` gets the bytes sent by this call so far.
    pub fn compat_write(
        &mut self,
        partition: &str,
        offset: u32,
        len: u32,
        data: &mut dyn Read,
        crc: bool,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ZxicError> {
        let command = Command::Write {
            partition: partition.into(),
            offset,
            len,
        };
        let mut reply = self.exchange(&command, self.timeout())?;
        let mut sent = Crc32::new();
        let mut left = len;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reply {
                Reply::Data(n) if n > 0 && n <= left && n <= WINDOW => n,
                Reply::Data(n) => {
                    return Err(ZxicError::Window {
                        command: command.text(),
                        asked: u64::from(n),
                        left: u64::from(left),
                    })
                }
                other => {
                    self.okay(&command, other)?;
                    return Err(ZxicError::Unexpected {
                        command: command.text(),
                        reply: format!("OKAY with {left} bytes not yet sent"),
                    });
                }
            };
            let mut window = n as usize;
            while window > 0 {
                let piece = window.min(buf.len());
                data.read_exact(&mut buf[..piece]).map_err(ZxicError::Io)?;
                sent.update(&buf[..piece]);
                self.send(&buf[..piece])?;
                window -= piece;
                left -= piece as u32;
                progress(u64::from(len - left));
            }
            if left == 0 {
                break;
            }
            reply = self.reply(&command, self.timeout())?;
        }
        if crc {
            let mut word = [0u8; 4];
            self.read_exact(&mut word)?;
            let device = u32::from_le_bytes(word);
            if device != sent.value() {
                return Err(ZxicError::Crc {
                    partition: partition.into(),
                    offset,
                    len,
                    sent: sent.value(),
                    device,
                });
            }
            return Ok(());
        }
        let reply = self.reply(&command, self.timeout())?;
        self.okay(&command, reply).map(|_| ())
    }

    /// Reads `len` bytes at `offset` of `partition` into `out`, one `compat_read` per window
    /// of at most [`WINDOW`] bytes (a device may give fewer; the rest is asked for again).
    /// `progress` gets the bytes read so far.
    pub fn compat_read(
        &mut self,
        partition: &str,
        offset: u32,
        len: u32,
        out: &mut dyn Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(), ZxicError> {
        let mut done = 0u32;
        let mut buf = vec![0u8; 64 * 1024];
        while done < len {
            let want = (len - done).min(WINDOW);
            let at = offset
                .checked_add(done)
                .ok_or_else(|| ZxicError::TooLarge(format!("{partition}: offset past 4 GiB")))?;
            let command = Command::Read {
                partition: partition.into(),
                offset: at,
                len: want,
            };
            let n = match self.exchange(&command, self.timeout())? {
                Reply::Data(n) if n > 0 && n <= want => n,
                Reply::Data(n) => {
                    return Err(ZxicError::Window {
                        command: command.text(),
                        asked: u64::from(n),
                        left: u64::from(want),
                    })
                }
                other => {
                    self.okay(&command, other)?;
                    return Err(ZxicError::Unexpected {
                        command: command.text(),
                        reply: "OKAY without DATA".into(),
                    });
                }
            };
            self.send(b"OKAY\0")?;
            let mut left = n as usize;
            while left > 0 {
                let piece = left.min(buf.len());
                self.read_exact(&mut buf[..piece])?;
                out.write_all(&buf[..piece]).map_err(ZxicError::Io)?;
                left -= piece;
                progress(u64::from(done) + (n as usize - left) as u64);
            }
            self.send(b"OKAY\0")?;
            if self.any_within(CLOSING_OKAY_WAIT) {
                let closing = self.reply(&command, self.timeout())?;
                self.okay(&command, closing)?;
            }
            done += n;
        }
        Ok(())
    }

    /// `reboot`. A device that resets before its `OKAY REBOOT` arrives is taken as rebooted
    /// (zxdl: "devices frequently drop the link before the reply lands").
    pub fn reboot(&mut self) -> Result<(), ZxicError> {
        match self.exchange(&Command::Reboot, self.timeout()) {
            Ok(reply) => self.okay(&Command::Reboot, reply).map(|_| ()),
            Err(ZxicError::Transport(
                TransportError::Timeout(_) | TransportError::Disconnected,
            )) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip() {
        let commands = [
            Command::GetVar("plat".into()),
            Command::CrcOn,
            Command::SetPartitions(0x1000),
            Command::Write {
                partition: "imagefs".into(),
                offset: 0x20_0000,
                len: 0x1234,
            },
            Command::Read {
                partition: "nvrofs".into(),
                offset: 0,
                len: 0x4_0000,
            },
            Command::Erase("auto".into()),
            Command::Reboot,
        ];
        for c in commands {
            assert_eq!(Command::parse(&c.text()), Some(c.clone()), "{}", c.text());
        }
        assert_eq!(Command::SetPartitions(0x1000).text(), "set partitions 1000");
        assert_eq!(
            Command::Write {
                partition: "rootfs".into(),
                offset: 0x20_0000,
                len: 0x20_0000
            }
            .text(),
            "compat_write rootfs 00200000 200000"
        );
        assert_eq!(Command::parse("erase ../x"), None);
        assert_eq!(Command::parse("compat_write a b"), None);
    }

    #[test]
    fn replies_parse_like_the_vendor_flasher() {
        assert_eq!(Reply::parse("DATA 00200000"), Some(Reply::Data(0x20_0000)));
        assert_eq!(Reply::parse("DATA00001000"), Some(Reply::Data(0x1000)));
        assert_eq!(Reply::parse("DATA 123456789"), None);
        assert_eq!(
            Reply::parse("OKAY RECV_TABLES"),
            Some(Reply::Okay("RECV_TABLES".into()))
        );
        assert_eq!(
            Reply::parse("FAIL UNACCEPTABLE_PARTITION_CHANGE"),
            Some(Reply::Fail(UNACCEPTABLE_CHANGE.into()))
        );
        assert_eq!(Reply::parse("HELLO"), None);
        assert_eq!(Reply::Data(0x20_0000).to_wire(), b"DATA 00200000\0");
    }
}
