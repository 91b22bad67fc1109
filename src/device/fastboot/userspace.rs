//! The fastboot driver's dynamic-partition commands (see [`crate::device::dynamic`]).

use std::io::Read;

use super::FastbootDriver;
use crate::device::dynamic::{DynamicPartitions, SnapshotStatus};
use crate::device::{DeviceError, ImageSource};
use crate::package::MAX_SUPER_EMPTY_SIZE;
use crate::protocol::fastboot::vars::{parse_size, yes_no};
use crate::transport::Transport;

impl<T: Transport> DynamicPartitions for FastbootDriver<T> {
    fn is_userspace(&mut self) -> Result<bool, DeviceError> {
        Ok(self
            .client
            .getvar("is-userspace")?
            .as_deref()
            .and_then(yes_no)
            .unwrap_or(false))
    }

    fn is_logical(&mut self, partition: &str) -> Result<Option<bool>, DeviceError> {
        Ok(self
            .client
            .getvar(&format!("is-logical:{partition}"))?
            .as_deref()
            .and_then(yes_no))
    }

    fn super_partition_name(&mut self) -> Result<Option<String>, DeviceError> {
        Ok(self
            .client
            .getvar("super-partition-name")?
            .map(|name| crate::device::clean(&name))
            .filter(|name| !name.is_empty()))
    }

    fn size_now(&mut self, partition: &str) -> Result<Option<u64>, DeviceError> {
        Ok(self
            .client
            .getvar(&format!("partition-size:{partition}"))?
            .and_then(|v| parse_size(&v, self.style)))
    }

    fn snapshot_status(&mut self) -> Result<SnapshotStatus, DeviceError> {
        let answer = self.client.getvar("snapshot-update-status")?;
        Ok(SnapshotStatus::from_answer(answer.as_deref()))
    }

    fn cancel_snapshot_update(&mut self) -> Result<(), DeviceError> {
        self.client.raw("snapshot-update:cancel")?;
        Ok(())
    }

    fn reboot_fastboot(&mut self) -> Result<(), DeviceError> {
        self.forget_mode();
        Ok(self.client.reboot_fastboot()?)
    }

    fn reboot_bootloader(&mut self) -> Result<(), DeviceError> {
        self.forget_mode();
        Ok(self.client.reboot_bootloader()?)
    }

    fn update_super(
        &mut self,
        name: &str,
        layout: &dyn ImageSource,
        wipe: bool,
    ) -> Result<(), DeviceError> {
        // A super_empty.img is a few KiB (capped by the package): it is read whole, checked
        // against its signature, and only then sent.
        if layout.len() > MAX_SUPER_EMPTY_SIZE {
            return Err(DeviceError::TooLarge(format!(
                "a super_empty.img of {} bytes (at most {MAX_SUPER_EMPTY_SIZE})",
                layout.len()
            )));
        }
        let mut reader = layout.send_reader().map_err(DeviceError::ImageRead)?;
        let mut bytes = Vec::with_capacity(layout.len() as usize);
        (&mut reader)
            .take(MAX_SUPER_EMPTY_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(DeviceError::ImageRead)?;
        reader.verify().map_err(DeviceError::ImageChanged)?;
        let len = u32::try_from(bytes.len())
            .map_err(|_| DeviceError::TooLarge("super_empty.img".into()))?;
        self.client
            .download(len, |w| std::io::Write::write_all(w, &bytes))?;
        let wipe = if wipe { ":wipe" } else { "" };
        self.client.raw(&format!("update-super:{name}{wipe}"))?;
        self.forget_listing();
        Ok(())
    }

    fn resize_logical(&mut self, partition: &str, size: u64) -> Result<(), DeviceError> {
        self.client
            .raw(&format!("resize-logical-partition:{partition}:{size}"))?;
        self.forget_listing();
        Ok(())
    }

    fn create_logical(&mut self, partition: &str, size: u64) -> Result<(), DeviceError> {
        self.client
            .raw(&format!("create-logical-partition:{partition}:{size}"))?;
        self.forget_listing();
        Ok(())
    }

    fn delete_logical(&mut self, partition: &str) -> Result<(), DeviceError> {
        self.client
            .raw(&format!("delete-logical-partition:{partition}"))?;
        self.forget_listing();
        Ok(())
    }
}

impl<T: Transport> FastbootDriver<T> {
    /// The partition layout changed: what `getvar:all` listed is no longer true.
    fn forget_listing(&mut self) {
        self.listed = Default::default();
    }

    /// The device is leaving for another mode, whose download buffer differs
    /// (fastbootd's `max-download-size` is not the bootloader's): it is read again, and
    /// every split is planned again for it.
    fn forget_mode(&mut self) {
        self.forget_listing();
        self.max_download = None;
        self.prepared.clear();
    }
}
