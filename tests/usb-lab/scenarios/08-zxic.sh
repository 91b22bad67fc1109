# Scenario 8: the virtual ZXIC ZX297520V3 hotspot as a USB gadget in its boot ROM
# (19d2:0256, one FF/FF/FF interface with a bulk OUT / bulk IN pair). `flashline devices`
# lists it in zxic mode; `flashline flash` loads tloader and tboot over the raw bulk
# endpoints (libusb), backs up NV, sends the partition table (an accepted change, so
# `erase auto` follows) and writes both images in CRC-checked 2 MiB windows. The flash file
# then holds exactly the images, and NV exactly what it held before.
export FLASHLINE_HOME=/tmp/home8
flash=/tmp/z8/flash.img
FLASHLINE_LOG=flashline::sim=debug flashline sim zxic --usb-gadget --dir /tmp/z8 --serial LAB0008 > /tmp/z8.log 2>&1 &
wait_for 20 usb_device 19d2 0256 || { cat /tmp/z8.log; fail "the ZXIC device did not enumerate"; }
dev=$(usb_device 19d2 0256)
[ "$(cat "$dev/serial")" = LAB0008 ] || fail "serial $(cat "$dev/serial"), expected LAB0008"
intf=$dev/$(basename "$dev"):1.0
[ "$(cat "$intf/bInterfaceClass" "$intf/bInterfaceSubClass" "$intf/bInterfaceProtocol" | tr -d '\n')" = ffffff ] \
  || fail "the interface is not FF/FF/FF"
note "19d2:0256 LAB0008 on the bus"
# NV as the factory left it (nvrofs at 0x120000, nvrw at 0x160000, 256 KiB each).
nv_before=$(dd if="$flash" bs=65536 skip=18 count=8 2>/dev/null | sha256sum | cut -d' ' -f1)

listing=$(flashline devices)
echo "$listing"
address=$(echo "$listing" | awk '$2 == "zxic" && $4 == "LAB0008" {print $1}')
case "$address" in usb:[0-9]*-[0-9]*) ;; *) fail "flashline devices does not list the ZXIC device on USB" ;; esac

start=$(uptime_s)
flashline flash /lab/08-zxic/stock.flpkg --device "$address" --trust /lab/08-zxic/trust --json \
  > /tmp/flash8.json 2>&1 || { cat /tmp/flash8.json; tail -n 60 /tmp/z8.log; fail "flashline flash failed"; }
note "flashline flash took $(echo "$(uptime_s) $start" | awk '{print $1 - $2}') s"
grep -q '"outcome": *"success"' /tmp/flash8.json || { cat /tmp/flash8.json; fail "no success outcome"; }
grep -q 'tboot:erase auto' /tmp/z8.log || fail "no erase auto after the accepted table change"
grep -q 'tboot:reply FAIL ACCEPTABLE_PARTITION_CHANGE' /tmp/z8.log || fail "the device did not accept the table change"
check_lun "$flash" /lab/08-zxic/expected
nv_after=$(dd if="$flash" bs=65536 skip=18 count=8 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$nv_after" = "$nv_before" ] || fail "NV changed"
note "NV (nvrofs, nvrw) unchanged: $nv_after"
tr -d ' \n' < /tmp/flash8.json | grep -q '"label":"nvrofs"' || fail "no NV backup in the report"
note "NV backed up"
