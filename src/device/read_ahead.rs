//! Reading an image on a helper thread while the previous buffer goes to the device.
//!
//! The send reader reads and hashes; the transport copies into the kernel and waits for the
//! link. Done in turn on one thread, each waits for the other. [`ReadAhead`] moves reading
//! and hashing to a scoped helper thread that fills a few fixed buffers ahead of the
//! sender: the bytes hashed are still exactly the bytes handed out, in order, and the
//! buffers are allocated once per image, never per chunk.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

/// Bytes per buffer.
const BUFFER_LEN: usize = 1 << 20;
/// Buffers in flight: one being sent, the rest being filled or waiting.
const BUFFERS: usize = 3;

/// A filled buffer and how many of its bytes are valid; fewer than its length means the
/// source ended.
type Filled = io::Result<(Vec<u8>, usize)>;

/// The consuming end: a [`BufRead`] over the buffers the helper fills.
pub struct ReadAhead<'scope, R> {
    filled: Receiver<Filled>,
    empty: SyncSender<Vec<u8>>,
    /// The buffer being handed out, its valid length and how much was consumed.
    current: Option<(Vec<u8>, usize, usize)>,
    /// Set once the source ended (or failed): nothing more will arrive.
    done: bool,
    helper: ScopedJoinHandle<'scope, R>,
}

impl<'scope, R: Read + Send + 'scope> ReadAhead<'scope, R> {
    /// Starts reading `source` on a thread of `scope`.
    pub fn spawn<'env>(scope: &'scope Scope<'scope, 'env>, mut source: R) -> io::Result<Self> {
        let (filled_tx, filled) = mpsc::sync_channel::<Filled>(BUFFERS);
        let (empty, empty_rx) = mpsc::sync_channel::<Vec<u8>>(BUFFERS);
        for _ in 0..BUFFERS {
            // Cannot fail: the channel has room for every buffer and its receiver is alive.
            let _ = empty.send(vec![0u8; BUFFER_LEN]);
        }
        let helper = std::thread::Builder::new()
            .name("image-read-ahead".into())
            .spawn_scoped(scope, move || {
                // Ends when the consumer hangs up (either channel) or the source ends.
                while let Ok(mut buf) = empty_rx.recv() {
                    let result = fill(&mut source, &mut buf).map(|n| (buf, n));
                    let last = !matches!(&result, Ok((buf, n)) if *n == buf.len());
                    if filled_tx.send(result).is_err() || last {
                        break;
                    }
                }
                source
            })?;
        Ok(ReadAhead {
            filled,
            empty,
            current: None,
            done: false,
            helper,
        })
    }

    /// Stops the helper and gives the source back, e.g. to check what it hashed. Bytes the
    /// helper read ahead but nobody consumed are lost: call this only at the end.
    pub fn finish(self) -> R {
        drop(self.filled);
        drop(self.empty);
        self.helper
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn fill(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match source.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl<R> BufRead for ReadAhead<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if let Some((buf, len, pos)) = self.current.take() {
            if pos < len {
                self.current = Some((buf, len, pos));
            } else if !self.done {
                // Cannot fail while the helper waits for buffers; if it stopped, the
                // buffer is simply dropped.
                let _ = self.empty.send(buf);
            }
        }
        if self.current.is_none() && !self.done {
            match self.filled.recv() {
                Ok(Ok((buf, len))) => {
                    self.done = len < buf.len();
                    self.current = Some((buf, len, 0));
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Err(io::Error::other("the image reader thread stopped"));
                }
            }
        }
        Ok(match &self.current {
            Some((buf, len, pos)) => &buf[*pos..*len],
            None => &[],
        })
    }

    fn consume(&mut self, amt: usize) {
        if let Some((_, len, pos)) = &mut self.current {
            *pos = (*pos + amt).min(*len);
        }
    }
}

impl<R> Read for ReadAhead<'_, R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let available = self.fill_buf()?;
        let n = available.len().min(out.len());
        out[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source of `len` bytes (a counter pattern), failing at `fail_at` if given.
    struct Source {
        at: usize,
        len: usize,
        fail_at: Option<usize>,
    }

    impl Read for Source {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.fail_at.is_some_and(|f| self.at >= f) {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.len - self.at).min(100_000);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = ((self.at + i) % 251) as u8;
            }
            self.at += n;
            Ok(n)
        }
    }

    fn expected(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn hands_out_every_byte_in_order_and_returns_the_source() {
        for len in [0, 1, BUFFER_LEN, BUFFER_LEN * 3 + 17] {
            let (bytes, source) = std::thread::scope(|s| {
                let source = Source {
                    at: 0,
                    len,
                    fail_at: None,
                };
                let mut ahead = ReadAhead::spawn(s, source).unwrap();
                let mut bytes = Vec::new();
                ahead.read_to_end(&mut bytes).unwrap();
                (bytes, ahead.finish())
            });
            assert_eq!(bytes, expected(len), "len {len}");
            assert_eq!(source.at, len);
        }
    }

    #[test]
    fn source_errors_reach_the_consumer() {
        std::thread::scope(|s| {
            let source = Source {
                at: 0,
                len: BUFFER_LEN * 4,
                fail_at: Some(BUFFER_LEN + 5),
            };
            let mut ahead = ReadAhead::spawn(s, source).unwrap();
            let mut bytes = Vec::new();
            let err = ahead.read_to_end(&mut bytes).unwrap_err();
            assert_eq!(err.to_string(), "disk on fire");
            assert_eq!(bytes.len(), BUFFER_LEN);
            ahead.finish();
        });
    }

    #[test]
    fn finishing_early_stops_the_helper() {
        let source = std::thread::scope(|s| {
            let source = Source {
                at: 0,
                len: BUFFER_LEN * 50,
                fail_at: None,
            };
            let mut ahead = ReadAhead::spawn(s, source).unwrap();
            assert!(!ahead.fill_buf().unwrap().is_empty());
            ahead.finish()
        });
        // It read at most the buffers in flight, not the whole source.
        assert!(source.at <= BUFFER_LEN * (BUFFERS + 1), "{}", source.at);
    }
}
