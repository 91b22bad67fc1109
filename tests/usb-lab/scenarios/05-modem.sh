# Scenario 5: a USB modem (ZTE MF833V, 19d2:1403) on a CDC ACM gadget. flashline finds its
# /dev/ttyACM port by VID/PID through serialport, identifies it over AT, and `flashline
# flash` takes it to download mode as real ZTE modems are reported to go: AT+ZCDRUN=E
# (factory mode) makes the ACM gadget go away and a DIAG port come (19d2:0016, interface
# 0, another ACM gadget); flashline sends DIAG_DLOAD_F there, the DIAG port goes and the
# EDL gadget (19d2:0076) comes on the same USB port; the job then loads the programmer and
# flashes over USB bulk. The LUN file holds the images.
export FLASHLINE_HOME=/tmp/home5
lun=/tmp/m5/lun0.img
FLASHLINE_LOG=flashline::sim=debug flashline sim modem --usb-gadget --dir /tmp/m5 --serial LAB0005 > /tmp/m5.log 2>&1 &
wait_for 20 usb_device 19d2 1403 || { cat /tmp/m5.log; ls -l /dev/ttyGS* /dev/ttyACM*; fail "the modem did not enumerate"; }
wait_for 10 sh -c 'ls /dev/ttyACM*' || fail "no ttyACM port appeared"

listing=$(flashline devices)
echo "$listing"
port=$(echo "$listing" | awk '$2 == "modem" && $NF == "LAB0005" {print $1}')
case "$port" in serial:/dev/ttyACM*) ;; *) fail "flashline devices does not list the modem's ttyACM port" ;; esac
flashline info "$port"
flashline info "$port" --json | tr -d ' \n' > /tmp/info5.json
grep -q '"product":"MF833V"' /tmp/info5.json || fail "the modem did not identify itself as MF833V over AT"
grep -q '"imei":"868611040000015"' /tmp/info5.json || fail "the modem's IMEI (AT+CGSN) is missing"

start=$(uptime_s)
flashline flash /lab/05-modem/stock.flpkg --device "$port" --trust /lab/05-modem/trust --json \
  > /tmp/flash5.json 2>&1 || { cat /tmp/flash5.json; tail -n 40 /tmp/m5.log; fail "flashline flash failed"; }
note "flashline flash (switch included) took $(echo "$(uptime_s) $start" | awk '{print $1 - $2}') s"
grep -q '"outcome": *"success"' /tmp/flash5.json || { cat /tmp/flash5.json; fail "no success outcome"; }
grep -q '"step": *"DIAG dload request on serial:/dev/ttyACM' /tmp/flash5.json \
  || { cat /tmp/flash5.json; fail "the download request did not go to the DIAG port"; }
note "AT+ZCDRUN=E, then DIAG_DLOAD_F on the DIAG port"
# The job ended with a reset: the device re-enumerates (off the bus for a moment), still
# in EDL with the modem's serial, and the modem composition does not come back.
sleep 1
wait_for 10 usb_device 19d2 0076 || fail "the device is not in EDL (19d2:0076) on the bus"
usb_device 19d2 1403 && fail "the modem composition is back on the bus"
dev=$(usb_device 19d2 0076)
[ "$(cat "$dev/serial")" = LAB0005 ] || fail "EDL serial $(cat "$dev/serial"), expected LAB0005"
check_lun "$lun" /lab/05-modem/expected
[ "$(le64_at "$lun" 73770)" = 131071 ] || fail "the DISK patch was not applied"
note "DISK patch applied"
