# Scenario 9: the Unisoc simulator as a FunctionFS gadget (1782:4d00, "Gadget Serial", one
# bulk interface), in its boot ROM's download mode. `flashline devices` lists it as
# `unisoc`; `flashline flash` finds it on USB, sends the CDC control-line request, runs
# FDL1 and FDL2 over the raw bulk endpoints, backs up the NV partitions, writes boot and
# system (read back), keeps l_fixnv1 (the package's NV image is not written) and resets
# the device. The partition files hold exactly the images; NV is unchanged.
export FLASHLINE_HOME=/tmp/home9
dir=/tmp/u9
FLASHLINE_LOG=flashline::sim=debug flashline sim unisoc --usb-gadget --dir "$dir" --serial LAB0009 > /tmp/u9.log 2>&1 &
wait_for 20 usb_device 1782 4d00 || { cat /tmp/u9.log; fail "the Unisoc device did not enumerate"; }
dev=$(usb_device 1782 4d00)
[ "$(cat "$dev/product")" = "Gadget Serial" ] || fail "product string $(cat "$dev/product")"
[ "$(cat "$dev/serial")" = LAB0009 ] || fail "serial $(cat "$dev/serial")"
nv_before=$(sha "$dir/l_fixnv1.img")

listing=$(flashline devices)
echo "$listing"
address=$(echo "$listing" | awk '$2 == "unisoc" && /LAB0009/ {print $1}')
case "$address" in usb:[0-9]*-[0-9]*) ;; *) fail "flashline devices does not list the Unisoc device on USB" ;; esac
note "listed as $address"

start=$(uptime_s)
flashline flash /lab/09-unisoc/stock.flpkg --device "$address" --trust /lab/09-unisoc/trust --json \
  > /tmp/flash9.json 2>&1 || { cat /tmp/flash9.json; tail -n 40 /tmp/u9.log; fail "flashline flash failed"; }
note "flashline flash took $(echo "$(uptime_s) $start" | awk '{print $1 - $2}') s"
grep -q '"outcome": *"success"' /tmp/flash9.json || { cat /tmp/flash9.json; fail "no success outcome"; }
while read -r label size sum; do
  got=$(sha "$dir/$label.img" "$size")
  [ "$got" = "$sum" ] || fail "$label: sha256 $got, expected $sum"
  note "$label: $size bytes equal the image"
done < /lab/09-unisoc/expected
[ "$(sha "$dir/l_fixnv1.img")" = "$nv_before" ] || fail "l_fixnv1 changed"
grep -q 'fdl2:NORMAL_RESET' /tmp/u9.log || fail "the device was not reset"
tr -d ' \n' < /tmp/flash9.json | grep -q '"label":"l_fixnv1"' || fail "l_fixnv1 was not backed up"
note "NV kept and backed up; device reset"
