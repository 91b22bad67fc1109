//! The EDL device's cable with a USB link's limits ([`EdlConfig::link_rate`],
//! [`EdlConfig::latency`]): a [`Line`] that takes the host's bytes no faster than the rate
//! and charges one round trip each time the conversation turns from the device back to
//! the host.
//!
//! A pseudo-terminal (or the lab's virtual USB bus) carries bytes as fast as the CPU copies
//! them, so without this a virtual EDL device says nothing about what a real one costs
//! over USB 2.0, where the bytes written dominate. The pacing is the virtual phone's
//! ([`Shaper`]); flow control on the line then slows the host as a saturated link would.
//!
//! [`EdlConfig::link_rate`]: super::EdlConfig::link_rate
//! [`EdlConfig::latency`]: super::EdlConfig::latency

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use super::Line;
use crate::sim::shaper::Shaper;
use crate::transport::{Transport, TransportError};

/// `line` with the link's limits, or `line` itself when it has none.
pub(super) fn shape(line: Box<dyn Line>, rate: Option<u64>, latency: Duration) -> Box<dyn Line> {
    if rate.is_none() && latency.is_zero() {
        return line;
    }
    Box::new(Shaped {
        inner: line,
        shaper: rate.map(Shaper::new),
        latency,
        turned: false,
    })
}

struct Shaped {
    inner: Box<dyn Line>,
    shaper: Option<Shaper>,
    /// Charged once per turn of the conversation: a USB round trip.
    latency: Duration,
    /// The device has written since the host's bytes last arrived: the next bytes from
    /// the host start a new exchange.
    turned: bool,
}

impl Transport for Shaped {
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        self.turned = true;
        self.inner.write(data, timeout)
    }

    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let n = self.inner.read(buf, timeout)?;
        if n > 0 {
            if std::mem::take(&mut self.turned) && !self.latency.is_zero() {
                self.inner.pause(self.latency);
            }
            if let Some(shaper) = &mut self.shaper {
                shaper.pass(n);
            }
        }
        Ok(n)
    }

    fn address(&self) -> &str {
        self.inner.address()
    }
}

impl Line for Shaped {
    fn stop_flag(&self) -> &AtomicBool {
        self.inner.stop_flag()
    }

    fn discard_input(&mut self) {
        self.inner.discard_input();
    }

    fn skip_rest_of_transfer(&mut self) -> bool {
        self.inner.skip_rest_of_transfer()
    }

    fn reboot(&mut self) {
        self.inner.reboot();
    }
}
