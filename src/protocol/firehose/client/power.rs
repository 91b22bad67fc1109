//! Power and boot-drive commands, including abandoning a session on the way out.

use super::*;

impl<T: Transport> FirehoseClient<T> {
    /// Reboots the device. It disconnects afterwards, so a lost link after the ACK is fine.
    pub fn power_reset(&mut self) -> Result<(), FirehoseError> {
        self.power(PowerAction::Reset)
    }

    /// Makes `lun` the one the boot ROM boots from (`<setbootablestoragedrive>`).
    pub fn set_bootable_storage_drive(&mut self, lun: u32) -> Result<(), FirehoseError> {
        self.simple(
            &Command::SetBootableStorageDrive { lun },
            self.timeouts.response,
        )
        .map(drop)
    }

    /// The last word to a device the host gives up on: sends `<power>` even when the
    /// session is out of step (after garbage or a timeout nothing it says can be trusted,
    /// but it may still obey a reset) and waits briefly for its ACK. A device that was
    /// mid-transfer takes the command as data of the range being written, which the failed
    /// job left incomplete anyway.
    pub fn abandon(&mut self, action: PowerAction) -> Result<(), FirehoseError> {
        let command = Command::Power {
            action,
            delay_seconds: None,
        };
        self.out_of_step = Some("the session was abandoned".into());
        self.send(&command)?;
        let mut exchange = Exchange::new(&command);
        let response =
            self.await_response(&mut exchange, self.timeouts.response.min(ABANDON_WAIT))?;
        if response.ack {
            Ok(())
        } else {
            Err(exchange.nak())
        }
    }

    /// Reboots, powers off, or goes back to EDL, as `action` says. The device disconnects
    /// afterwards, so a lost link after the ACK is fine.
    pub fn power(&mut self, action: PowerAction) -> Result<(), FirehoseError> {
        let command = Command::Power {
            action,
            delay_seconds: None,
        };
        self.guarded(&command, |client| {
            let mut exchange = Exchange::new(&command);
            client.send(&command)?;
            let response = client.await_response(&mut exchange, client.timeouts.response)?;
            if !response.ack {
                return Err(exchange.nak());
            }
            match client.drain(&mut exchange, Stray::Refuse, LATE_LOG_GRACE) {
                Err(FirehoseError::Transport(TransportError::Disconnected)) | Ok(()) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// Checks that the programmer answers.
    pub fn nop(&mut self) -> Result<(), FirehoseError> {
        self.simple(&Command::Nop, self.timeouts.response).map(drop)
    }
}
