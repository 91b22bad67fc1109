# Scenario 4: the virtual EDL device as a USB gadget (05c6:9008, interface FF/FF/FF) that
# enumerates as most real ones do: no USB serial number, and the chip serial in the product
# string (QUSB__BULK_SN:xxxxxxxx). `flashline flash` names it by its bus path, reads the
# chip in Sahara command mode, loads the programmer over Sahara and flashes over Firehose
# on the raw bulk endpoints (libusb, no serial driver); then Debian's qdl, an independent
# Firehose host reaching the device through udev and usbfs, flashes it with a
# rawprogram/patch set. The LUN file holds exactly the images each wrote.
export FLASHLINE_HOME=/tmp/home4
lun=/tmp/e4/lun0.img
FLASHLINE_LOG=flashline::sim=debug flashline sim edl --usb-gadget --dir /tmp/e4 --serial LAB0004 --no-iserial > /tmp/e4.log 2>&1 &
wait_for 20 usb_device 05c6 9008 || { cat /tmp/e4.log; fail "the EDL device did not enumerate"; }
dev=$(usb_device 05c6 9008)
[ ! -s "$dev/serial" ] || fail "the device has a USB serial number: $(cat "$dev/serial")"
product=$(cat "$dev/product")
case "$product" in QUSB__BULK_SN:????????) ;; *) fail "product string $product, expected QUSB__BULK_SN:xxxxxxxx" ;; esac
chip=0x${product#QUSB__BULK_SN:}
note "no iSerial; product $product"
intf=$dev/$(basename "$dev"):1.0
[ "$(cat "$intf/bInterfaceClass" "$intf/bInterfaceSubClass" "$intf/bInterfaceProtocol" | tr -d '\n')" = ffffff ] \
  || fail "the interface is not FF/FF/FF"

listing=$(flashline devices)
echo "$listing"
address=$(echo "$listing" | awk -v p="$product" '$2 == "edl" && $3 == p {print $1}')
case "$address" in usb:[0-9]*-[0-9]*) ;; *) fail "flashline devices does not list the device in EDL on USB" ;; esac

devnum=$(cat "$dev/devnum")
start=$(uptime_s)
flashline flash /lab/04-edl/stock.flpkg --device "$address" --trust /lab/04-edl/trust --json \
  > /tmp/flash4.json 2>&1 || { cat /tmp/flash4.json /tmp/e4.log; fail "flashline flash failed"; }
note "flashline flash took $(echo "$(uptime_s) $start" | awk '{print $1 - $2}') s"
grep -q '"outcome": *"success"' /tmp/flash4.json || { cat /tmp/flash4.json; fail "no success outcome"; }
# The chip serial from the product string names the device; command mode read the chip.
tr -d ' \n' < /tmp/flash4.json | grep -q "\"serial\":\"$chip\"" || { cat /tmp/flash4.json; fail "the device is not named $chip"; }
tr -d ' \n' < /tmp/flash4.json | grep -q '"hwid":"0x0f1a5e0000000000"' || fail "no hardware id from Sahara command mode"
grep -q 'sahara:execute' /tmp/e4.log || fail "the device saw no command-mode query"
note "named $chip; chip read in Sahara command mode"
check_lun "$lun" /lab/04-edl/expected
[ "$(le64_at "$lun" 73770)" = 131071 ] || fail "the DISK patch (NUM_DISK_SECTORS-1) was not applied"
note "DISK patch applied: $(le64_at "$lun" 73770)"

# The job reset the device: it left the bus and enumerated again, in its boot ROM.
reenumerated() { d=$(usb_device 05c6 9008) && [ "$(cat "$d/devnum")" != "$devnum" ]; }
wait_for 10 reenumerated || fail "the device did not re-enumerate after its reset"
cd /lab/04-edl/qdl
start=$(uptime_s)
timeout 120 qdl --storage emmc prog_firehose_ddr.elf rawprogram0.xml patch0.xml > /tmp/qdl4.log 2>&1 \
  || { cat /tmp/qdl4.log; tail -n 60 /tmp/e4.log; fail "qdl failed"; }
note "qdl took $(echo "$(uptime_s) $start" | awk '{print $1 - $2}') s"
sed 's/^/   qdl: /' /tmp/qdl4.log | tail -n 8
check_lun "$lun" /lab/04-edl/qdl/expected
[ "$(le64_at "$lun" 73770)" = 4242 ] || fail "qdl's DISK patch was not applied"
note "qdl's DISK patch applied"
