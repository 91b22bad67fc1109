//! `flashline devices`: one line per attached device, once or as they come and go.

use std::process::ExitCode;

use anyhow::Result;

use crate::device::quirks::Quirks;
use crate::device::{discovery, printable};

/// One device as `flashline devices` lists it.
pub(super) fn device_line(d: &discovery::Found) -> Result<String> {
    Ok(format!(
        "{:<28} {:<9} {:<20} {}",
        printable(&d.address),
        serde_json::to_string(&d.mode)?.trim_matches('"'),
        printable(d.product.as_deref().unwrap_or_default()),
        printable(d.serial.as_deref().unwrap_or_default())
    ))
}

/// `flashline devices --watch`: one line per arrival or departure, until interrupted or
/// stdout goes away.
pub(super) fn watch_devices(json: bool) -> Result<ExitCode> {
    use discovery::Change;
    use std::io::Write;
    let result = discovery::watch(&Quirks::builtin(), |change| {
        let line = if json {
            serde_json::to_string(&change).map_err(anyhow::Error::from)
        } else {
            let (event, d) = match &change {
                Change::Arrived(d) => ("arrived", d),
                Change::Left(d) => ("left   ", d),
            };
            device_line(d).map(|line| format!("{event} {line}"))
        };
        let mut out = std::io::stdout().lock();
        match line.and_then(|l| {
            writeln!(out, "{l}")
                .and_then(|()| out.flush())
                .map_err(Into::into)
        }) {
            Ok(()) => std::ops::ControlFlow::Continue(()),
            Err(e) => std::ops::ControlFlow::Break(e),
        }
    });
    Err(result)
}
