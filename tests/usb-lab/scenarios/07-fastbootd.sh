# Scenario 7: a phone with dynamic partitions on USB. Debian's `fastboot` sends it to
# fastbootd (`reboot fastboot`): the gadget leaves the bus and comes back with the same
# serial and IDs and fastbootd's product string; the client finds it again and sees
# is-userspace: yes. It flashes the logical partition vendor_a, whose bytes then sit in
# super's extents; `reboot bootloader` brings the bootloader's identity back.
command -v fastboot >/dev/null || fail "fastboot is not in the guest (apt-get install fastboot on the host)"
FLASHLINE_LOG=flashline::sim=debug start_phone /tmp/p7 --serial LAB0007 --product lab-phone \
  --slots --dynamic --super-size 32M --logical system=8M --logical vendor=4M \
  --partition boot=2M --fastbootd-max-download-size 2097152
product() { cat "$(usb_device 18d1 4ee0)/product"; }
serial() { cat "$(usb_device 18d1 4ee0)/serial"; }
[ "$(product)" = "lab-phone" ] || fail "bootloader product string is '$(product)'"
fastboot -s LAB0007 getvar is-userspace 2>&1 | grep -q 'is-userspace: no' || fail "the bootloader says it is userspace"
fastboot -s LAB0007 reboot fastboot 2> /tmp/fb-reboot.txt || { cat /tmp/fb-reboot.txt; fail "reboot fastboot failed"; }
cat /tmp/fb-reboot.txt
wait_for 10 usb_device 18d1 4ee0 > /dev/null || fail "the phone did not come back"
[ "$(product)" = "lab-phone (fastbootd)" ] || fail "fastbootd product string is '$(product)'"
[ "$(serial)" = "LAB0007" ] || fail "the serial changed to '$(serial)'"
fastboot -s LAB0007 getvar is-userspace 2>&1 | grep -q 'is-userspace: yes' || fail "not in fastbootd"
fastboot -s LAB0007 flash vendor /lab/07-fastbootd/vendor.img 2> /tmp/fb-flash.txt || { cat /tmp/fb-flash.txt; fail "flash vendor failed"; }
cat /tmp/fb-flash.txt
grep -q "Resizing 'vendor_a'" /tmp/fb-flash.txt || fail "the client did not resize vendor_a"
flashline lp dump /tmp/p7/super.img > /tmp/p7-lp.txt
cat /tmp/p7-lp.txt
line=$(grep -A1 '^  vendor_a: ' /tmp/p7-lp.txt | tail -n 1)
first=$(echo "$line" | sed -n 's/.*super sectors \([0-9]*\)\.\.\([0-9]*\).*/\1/p')
end=$(echo "$line" | sed -n 's/.*super sectors \([0-9]*\)\.\.\([0-9]*\).*/\2/p')
[ -n "$first" ] || fail "no extent for vendor_a in: $line"
[ $((end - first)) -eq 2048 ] || fail "vendor_a is $((end - first)) sectors, expected 2048"
got=$(dd if=/tmp/p7/super.img bs=512 skip="$first" count=2048 2>/dev/null | sha256sum | cut -d' ' -f1)
[ "$got" = "$(cat /lab/07-fastbootd/expected)" ] || fail "vendor_a in super: sha256 $got"
note "vendor_a: 1 MiB at super sector $first equals the image"
fastboot -s LAB0007 reboot bootloader || fail "reboot bootloader failed"
wait_for 10 sh -c '[ "$(cat /sys/bus/usb/devices/*/product 2>/dev/null | grep -c "^lab-phone$")" = 1 ]' \
  || fail "the bootloader identity did not come back"
fastboot -s LAB0007 getvar is-userspace 2>&1 | grep -q 'is-userspace: no' || fail "not back in the bootloader"
stop_phone
