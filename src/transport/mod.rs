//! Byte pipes to a device: TCP (fastboot's FB01 framing), USB bulk endpoints and serial
//! ports.
//!
//! A transport moves messages and knows nothing of what they mean. Packet transports (USB
//! bulk, fastboot-over-TCP frames) return one device message per [`Transport::read`]; a
//! message larger than the caller's buffer is an error, which is how protocol clients cap
//! what a device may send them. Stream transports (serial ports) return whatever bytes have
//! arrived; the protocol finds its own frames in them.

pub mod serial;
pub mod tcp;
pub mod usb;

use std::time::Duration;

/// Why a transport could not move bytes.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The device said nothing within the allowed time.
    #[error(
        "the device did not answer within {} (is it still connected and powered?)",
        humantime::format_duration(Duration::from_millis(.0.as_millis() as u64))
    )]
    Timeout(Duration),
    /// The link went away (cable pulled, device rebooted, peer closed the connection).
    #[error("the device disconnected")]
    Disconnected,
    /// The device sent a message larger than the protocol allows at this point.
    #[error("the device sent a {len}-byte message where at most {max} bytes are allowed")]
    MessageTooLarge {
        /// Length the device declared or sent.
        len: u64,
        /// The cap the reader had.
        max: usize,
    },
    /// The link-level handshake failed (e.g. fastboot TCP's `FB01`).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// No such device, or it could not be opened.
    #[error("cannot open {address}: {reason}")]
    Open {
        /// What the user asked for.
        address: String,
        /// Why it failed, in plain words.
        reason: String,
    },
    /// A USB-level failure.
    #[error("USB error: {0}")]
    Usb(String),
    /// Any other I/O failure.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// One connection to one device.
pub trait Transport: Send {
    /// Sends one message (one TCP frame, one USB bulk transfer) of `data`.
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError>;

    /// Receives the next device message into `buf` and returns its length.
    ///
    /// A message longer than `buf` is [`TransportError::MessageTooLarge`].
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError>;

    /// The address a user would pass to `--device` to reach this device again.
    fn address(&self) -> &str;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn write(&mut self, data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        (**self).write(data, timeout)
    }
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        (**self).read(buf, timeout)
    }
    fn address(&self) -> &str {
        (**self).address()
    }
}
