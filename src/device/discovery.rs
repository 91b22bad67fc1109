//! Finding devices and opening the right driver for an address.
//!
//! An address is what a user passes to `--device`: `tcp:HOST[:PORT]` for a device reached
//! over the network (fastboot's TCP transport, flashline's virtual phone), `usb:BUS-PORT`
//! for a USB bus path, or a bare USB serial number.

use std::time::Duration;

use serde::Serialize;

use super::fastboot::FastbootDriver;
use super::quirks::Quirks;
use super::{DeviceError, Driver, Mode};
use crate::transport::tcp::TcpTransport;
use crate::transport::usb::{self, UsbTransport};

/// How long to wait for a TCP device to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A device seen during discovery.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    /// The address to pass to `--device`.
    pub address: String,
    /// The mode it is in.
    pub mode: Mode,
    /// Product, if known without talking to it.
    pub product: Option<String>,
    /// Serial number, if known.
    pub serial: Option<String>,
    /// What the quirks file calls it, if it names its USB IDs.
    pub known_as: Option<String>,
}

/// Opens a driver for `address`. `is_virtual` marks flashline's own virtual devices.
pub fn open(
    address: &str,
    quirks: &Quirks,
    is_virtual: bool,
) -> Result<Box<dyn Driver>, DeviceError> {
    if let Some(hostport) = address.strip_prefix("tcp:") {
        let transport = TcpTransport::connect(hostport, CONNECT_TIMEOUT)?;
        return Ok(Box::new(FastbootDriver::new(
            transport,
            quirks.clone(),
            is_virtual,
        )));
    }
    let selector = address.strip_prefix("usb:").unwrap_or(address);
    if selector.is_empty() {
        return Err(DeviceError::BadAddress(format!(
            "{address:?} is not a device address: use tcp:HOST:PORT, usb:BUS-PORT or a serial number"
        )));
    }
    let transport = UsbTransport::open(address)?;
    Ok(Box::new(FastbootDriver::new(
        transport,
        quirks.clone(),
        false,
    )))
}

/// Lists fastboot devices on USB, plus each `connect` address that answers.
///
/// A TCP address that does not answer is left out; a machine without USB support gives an
/// empty USB list rather than an error.
pub fn scan(connect: &[String], quirks: &Quirks) -> Vec<Found> {
    let mut found: Vec<Found> = usb::list_fastboot()
        .unwrap_or_default()
        .into_iter()
        .map(|d| Found {
            known_as: quirks.usb(d.vid, d.pid).map(|q| q.name.clone()),
            address: d.bus_path,
            mode: Mode::Fastboot,
            product: d.product_string,
            serial: d.serial,
        })
        .collect();
    for address in connect {
        match open(address, quirks, false).and_then(|mut d| d.identify()) {
            Ok(info) => found.push(Found {
                address: address.clone(),
                mode: info.mode,
                product: info.product,
                serial: info.serial,
                known_as: None,
            }),
            Err(e) => tracing::info!("{address}: no device: {e}"),
        }
    }
    found
}
