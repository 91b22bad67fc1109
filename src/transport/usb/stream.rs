//! A byte stream over a pair of USB bulk endpoints, for protocols that frame their own
//! messages (Qualcomm Sahara and Firehose).
//!
//! USB bulk has no byte-stream semantics of its own: the receiver's transfer ends on a
//! *short packet* (one smaller than the endpoint's `wMaxPacketSize`) or when its buffer is
//! full. A message whose length is an exact multiple of the packet size therefore needs a
//! zero-length packet (ZLP) after it, or a device reading into a larger buffer keeps
//! waiting; and a ZLP or short packet in the middle of a message cuts the device's transfer
//! short. qdl sends each host message as one transfer and adds a ZLP when its length is a
//! multiple of the packet size; Firehose's `ZlpAwareHost` announces exactly that.
//!
//! The protocol clients, though, write one message in several pieces (a Sahara image
//! segment in 64 KiB slices, Firehose data in payload-sized chunks), and a serial port must
//! behave the same. So [`BulkStream`] decides where a transfer ends by the conversation, not
//! by the write calls: the host's message is over when it turns round to listen.
//!
//! * Writing sends every whole packet at once and holds back a partial last packet, so
//!   pieces of one message reach the device as one unbroken run of full packets.
//! * Before reading (and when dropped), the stream ends the transfer: the held-back bytes go
//!   out as a short packet, or, if the message ended exactly on a packet boundary, a ZLP.
//! * Reads ask for whole packets only (a request that is not a multiple of the packet size
//!   lets a full packet overflow it), through a one-packet buffer when the caller's buffer
//!   is smaller; ZLPs from the device carry nothing and are skipped, so a read returns at
//!   least one byte or times out.

use std::time::{Duration, Instant};

use crate::transport::{Transport, TransportError};

/// Largest bulk transfer submitted at once: bounds what one libusb call (and the kernel
/// buffer behind it) holds, whatever the message size.
const MAX_TRANSFER: usize = 1 << 20;

/// How long a stream being dropped may take to end a transfer the host left open.
const DROP_FLUSH: Duration = Duration::from_secs(1);

/// One claimed pair of bulk endpoints: the thin layer over the USB library, kept apart so
/// the stream logic can be tested with a fake pipe.
pub trait BulkPipe: Send {
    /// `wMaxPacketSize` of the bulk OUT endpoint.
    fn out_packet_size(&self) -> usize;

    /// `wMaxPacketSize` of the bulk IN endpoint.
    fn in_packet_size(&self) -> usize;

    /// Submits one OUT transfer of `data` (empty: a zero-length packet); returns how many
    /// bytes the device took before `timeout`.
    fn write_bulk(&mut self, data: &[u8], timeout: Duration) -> Result<usize, TransportError>;

    /// Submits one IN transfer into `buf` (a multiple of the IN packet size); returns the
    /// bytes received, 0 for a zero-length packet. It ends on a short packet, a full
    /// buffer, or at `timeout` with what has arrived (an error only if nothing did).
    fn read_bulk(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError>;
}

/// A byte stream over a [`BulkPipe`]; see the module documentation for where it ends
/// transfers and why.
pub struct BulkStream<P: BulkPipe> {
    pipe: P,
    address: String,
    out_packet: usize,
    in_packet: usize,
    /// The start of a packet not yet full, held back until more bytes or the turnaround.
    held: Vec<u8>,
    /// Full packets went out since the last transfer ended, so ending it needs a ZLP.
    open: bool,
    /// A packet read through the one-packet buffer, and how much of it is still unread.
    packet: Box<[u8]>,
    unread: std::ops::Range<usize>,
}

impl<P: BulkPipe> std::fmt::Debug for BulkStream<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkStream")
            .field("address", &self.address)
            .field("out_packet", &self.out_packet)
            .field("in_packet", &self.in_packet)
            .finish()
    }
}

impl<P: BulkPipe> BulkStream<P> {
    /// Wraps `pipe`; `address` is what [`Transport::address`] reports. A packet size of 0
    /// (a broken descriptor) is refused, since no transfer could ever end.
    pub fn new(pipe: P, address: String) -> Result<Self, TransportError> {
        let (out_packet, in_packet) = (pipe.out_packet_size(), pipe.in_packet_size());
        if out_packet == 0 || in_packet == 0 {
            return Err(TransportError::Open {
                address,
                reason: "a bulk endpoint declares a maximum packet size of 0".into(),
            });
        }
        Ok(BulkStream {
            pipe,
            address,
            out_packet,
            in_packet,
            held: Vec::with_capacity(out_packet),
            open: false,
            packet: vec![0; in_packet].into_boxed_slice(),
            unread: 0..0,
        })
    }

    /// Sends the held-back bytes; they are dropped even when sending fails, since the
    /// transfer they belonged to is broken either way.
    fn send_held(&mut self, deadline: Instant, timeout: Duration) -> Result<(), TransportError> {
        let sent = send(
            &mut self.pipe,
            self.out_packet,
            &self.held,
            deadline,
            timeout,
        );
        self.held.clear();
        sent
    }

    /// Ends the host's transfer: the held-back bytes as a short packet, or a ZLP after a
    /// run of full packets, so a device reading into a larger buffer sees the message end.
    fn end_transfer(&mut self, deadline: Instant, timeout: Duration) -> Result<(), TransportError> {
        if !self.held.is_empty() {
            self.send_held(deadline, timeout)?;
        } else if self.open {
            send_zlp(&mut self.pipe, deadline, timeout)?;
        }
        self.open = false;
        Ok(())
    }
}

impl<P: BulkPipe> Transport for BulkStream<P> {
    /// Queues `data` behind what was written before: whole packets go out now, a partial
    /// last packet waits for more bytes or for the next read (see the module documentation).
    fn write(&mut self, mut data: &[u8], timeout: Duration) -> Result<(), TransportError> {
        let deadline = Instant::now() + timeout;
        if !self.held.is_empty() {
            let take = (self.out_packet - self.held.len()).min(data.len());
            self.held.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.held.len() < self.out_packet {
                return Ok(());
            }
            self.send_held(deadline, timeout)?;
            self.open = true;
        }
        let whole = data.len() / self.out_packet * self.out_packet;
        if whole > 0 {
            send(
                &mut self.pipe,
                self.out_packet,
                &data[..whole],
                deadline,
                timeout,
            )?;
            self.open = true;
        }
        self.held.extend_from_slice(&data[whole..]);
        Ok(())
    }

    /// Ends the host's transfer, then returns the first bytes the device sends (at least
    /// one) within `timeout`.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, TransportError> {
        let deadline = Instant::now() + timeout;
        self.end_transfer(deadline, timeout)?;
        if buf.is_empty() {
            return Ok(0);
        }
        if !self.unread.is_empty() {
            return Ok(self.take_unread(buf));
        }
        let largest = MAX_TRANSFER / self.in_packet * self.in_packet;
        loop {
            let left = time_left(deadline, timeout)?;
            let n = if buf.len() >= self.in_packet {
                let len = (buf.len() / self.in_packet * self.in_packet).min(largest);
                self.pipe.read_bulk(&mut buf[..len], left)
            } else {
                self.pipe.read_bulk(&mut self.packet, left).map(|n| {
                    self.unread = 0..n.min(self.packet.len());
                    self.take_unread(buf)
                })
            };
            match n.map_err(|e| whole_timeout(e, timeout))? {
                0 => continue,
                n => return Ok(n),
            }
        }
    }

    fn address(&self) -> &str {
        &self.address
    }
}

impl<P: BulkPipe> BulkStream<P> {
    fn take_unread(&mut self, buf: &mut [u8]) -> usize {
        let n = self.unread.len().min(buf.len());
        buf[..n].copy_from_slice(&self.packet[self.unread.start..self.unread.start + n]);
        self.unread.start += n;
        n
    }
}

impl<P: BulkPipe> Drop for BulkStream<P> {
    /// A host that wrote last (a final command it does not wait on) still gets its message
    /// ended; a device that is gone by now only costs the bounded wait.
    fn drop(&mut self) {
        if let Err(e) = self.end_transfer(Instant::now() + DROP_FLUSH, DROP_FLUSH) {
            tracing::debug!(address = %self.address, "could not end the last USB transfer: {e}");
        }
    }
}

/// Sends all of `data` in transfers of at most [`MAX_TRANSFER`] bytes, each a whole number
/// of packets except perhaps the last (so only the end of `data` can be a short packet).
fn send<P: BulkPipe>(
    pipe: &mut P,
    packet: usize,
    mut data: &[u8],
    deadline: Instant,
    timeout: Duration,
) -> Result<(), TransportError> {
    let largest = MAX_TRANSFER / packet * packet;
    while !data.is_empty() {
        let len = data.len().min(largest);
        let sent = pipe
            .write_bulk(&data[..len], time_left(deadline, timeout)?)
            .map_err(|e| whole_timeout(e, timeout))?;
        data = &data[sent.min(len)..];
    }
    Ok(())
}

fn send_zlp<P: BulkPipe>(
    pipe: &mut P,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), TransportError> {
    pipe.write_bulk(&[], time_left(deadline, timeout)?)
        .map(drop)
        .map_err(|e| whole_timeout(e, timeout))
}

/// A timeout of one transfer reported as the caller's whole budget, like every transport.
fn whole_timeout(e: TransportError, timeout: Duration) -> TransportError {
    match e {
        TransportError::Timeout(_) => TransportError::Timeout(timeout),
        other => other,
    }
}

/// Time left until `deadline`, or the timeout error naming the whole `timeout`.
fn time_left(deadline: Instant, timeout: Duration) -> Result<Duration, TransportError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(TransportError::Timeout(timeout))
    } else {
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;

    const T: Duration = Duration::from_millis(200);

    /// What the fake pipe saw and will answer.
    #[derive(Default)]
    struct Wire {
        /// Every OUT transfer submitted, in order (empty: a ZLP).
        out: Vec<Vec<u8>>,
        /// IN transfers the device has ready, in order (empty: a ZLP).
        device: VecDeque<Vec<u8>>,
        /// The length of every IN request.
        asked: Vec<usize>,
    }

    /// A pipe with 512-byte packets over a shared [`Wire`]; reading with nothing queued
    /// times out.
    struct FakePipe(Arc<Mutex<Wire>>);

    impl BulkPipe for FakePipe {
        fn out_packet_size(&self) -> usize {
            512
        }
        fn in_packet_size(&self) -> usize {
            512
        }
        fn write_bulk(&mut self, data: &[u8], _: Duration) -> Result<usize, TransportError> {
            self.0.lock().unwrap().out.push(data.to_vec());
            Ok(data.len())
        }
        fn read_bulk(
            &mut self,
            buf: &mut [u8],
            timeout: Duration,
        ) -> Result<usize, TransportError> {
            let mut wire = self.0.lock().unwrap();
            wire.asked.push(buf.len());
            assert!(
                buf.len().is_multiple_of(512),
                "IN requests must be whole packets"
            );
            let Some(transfer) = wire.device.pop_front() else {
                return Err(TransportError::Timeout(timeout));
            };
            buf[..transfer.len()].copy_from_slice(&transfer);
            Ok(transfer.len())
        }
    }

    fn stream() -> (BulkStream<FakePipe>, Arc<Mutex<Wire>>) {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let stream = BulkStream::new(FakePipe(Arc::clone(&wire)), "usb:1-1".into()).unwrap();
        (stream, wire)
    }

    fn out_lens(wire: &Mutex<Wire>) -> Vec<usize> {
        wire.lock().unwrap().out.iter().map(Vec::len).collect()
    }

    #[test]
    fn pieces_of_one_message_go_out_as_full_packets_and_end_at_the_turnaround() {
        let (mut s, wire) = stream();
        let message: Vec<u8> = (0..1400u32).map(|i| i as u8).collect();
        s.write(&message[..100], T).unwrap();
        assert!(out_lens(&wire).is_empty(), "a partial packet waits");
        s.write(&message[100..1100], T).unwrap();
        s.write(&message[1100..], T).unwrap();
        assert_eq!(out_lens(&wire), [512, 512]);
        wire.lock().unwrap().device.push_back(b"reply".to_vec());
        let mut buf = [0u8; 4096];
        assert_eq!(s.read(&mut buf, T).unwrap(), 5);
        // The tail ended the transfer as a short packet; no ZLP was needed.
        assert_eq!(out_lens(&wire), [512, 512, 376]);
        assert_eq!(wire.lock().unwrap().out.concat(), message);
    }

    #[test]
    fn a_message_of_whole_packets_is_ended_by_one_zlp() {
        let (mut s, wire) = stream();
        s.write(&[7u8; 1024], T).unwrap();
        s.write(&[8u8; 512], T).unwrap();
        assert_eq!(out_lens(&wire), [1024, 512]);
        let mut buf = [0u8; 512];
        for _ in 0..2 {
            assert!(matches!(s.read(&mut buf, T), Err(TransportError::Timeout(t)) if t == T));
        }
        assert_eq!(out_lens(&wire), [1024, 512, 0], "exactly one ZLP");
    }

    #[test]
    fn reading_without_writing_sends_nothing() {
        let (mut s, wire) = stream();
        wire.lock().unwrap().device.push_back(vec![1; 3]);
        let mut buf = [0u8; 512];
        assert_eq!(s.read(&mut buf, T).unwrap(), 3);
        assert!(out_lens(&wire).is_empty());
    }

    #[test]
    fn a_huge_write_is_cut_into_bounded_transfers_of_whole_packets() {
        let (mut s, wire) = stream();
        let big = vec![0u8; 2 * MAX_TRANSFER + 700];
        s.write(&big, T).unwrap();
        assert_eq!(out_lens(&wire), [MAX_TRANSFER, MAX_TRANSFER, 512]);
        drop(s);
        assert_eq!(out_lens(&wire), [MAX_TRANSFER, MAX_TRANSFER, 512, 188]);
    }

    #[test]
    fn dropping_the_stream_ends_an_open_transfer() {
        let (mut s, wire) = stream();
        s.write(&[1u8; 512], T).unwrap();
        drop(s);
        assert_eq!(out_lens(&wire), [512, 0]);
    }

    #[test]
    fn reads_ask_for_whole_packets_and_keep_what_a_small_buffer_cannot_take() {
        let (mut s, wire) = stream();
        let packet: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        wire.lock().unwrap().device.push_back(packet.clone());
        let mut small = [0u8; 100];
        let mut got = Vec::new();
        for _ in 0..3 {
            let n = s.read(&mut small, T).unwrap();
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, packet);
        // One one-packet request served all three reads.
        assert_eq!(wire.lock().unwrap().asked, [512]);

        wire.lock().unwrap().device.push_back(vec![9; 700]);
        let mut odd = vec![0u8; 1500];
        assert_eq!(s.read(&mut odd, T).unwrap(), 700);
        assert_eq!(wire.lock().unwrap().asked, [512, 1024]);
    }

    #[test]
    fn zlps_from_the_device_are_skipped() {
        let (mut s, wire) = stream();
        wire.lock()
            .unwrap()
            .device
            .extend([vec![], vec![], b"<?xml".to_vec()]);
        let mut buf = [0u8; 512];
        assert_eq!(s.read(&mut buf, T).unwrap(), 5);
        assert_eq!(&buf[..5], b"<?xml");

        wire.lock().unwrap().device.push_back(vec![]);
        assert!(matches!(s.read(&mut buf, T), Err(TransportError::Timeout(t)) if t == T));
    }

    #[test]
    fn a_zero_packet_size_is_refused() {
        struct Broken;
        impl BulkPipe for Broken {
            fn out_packet_size(&self) -> usize {
                0
            }
            fn in_packet_size(&self) -> usize {
                512
            }
            fn write_bulk(&mut self, _: &[u8], _: Duration) -> Result<usize, TransportError> {
                unreachable!()
            }
            fn read_bulk(&mut self, _: &mut [u8], _: Duration) -> Result<usize, TransportError> {
                unreachable!()
            }
        }
        assert!(matches!(
            BulkStream::new(Broken, "usb:1-1".into()),
            Err(TransportError::Open { .. })
        ));
    }
}
