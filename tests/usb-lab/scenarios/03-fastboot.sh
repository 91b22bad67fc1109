# Scenario 3: Debian's `fastboot` (Google's client, on usbfs directly) against the phone
# gadget: devices, getvar all, flash (raw, and split sparse above max-download-size); the
# partitions hold exactly the images.
command -v fastboot >/dev/null || fail "fastboot is not in the guest (apt-get install fastboot on the host)"
FLASHLINE_LOG=flashline::sim=debug start_phone /tmp/p3 --serial LAB0003 --product lab-phone \
  --max-download-size 2097152 --partition boot=2M --partition system=8M
fastboot devices -l | tee /tmp/fb-devices.txt
grep -Eq '^LAB0003 +fastboot usb:1-1' /tmp/fb-devices.txt || fail "fastboot devices does not list LAB0003 on usb:1-1"
fastboot -s LAB0003 getvar all 2> /tmp/fb-getvar.txt || { cat /tmp/fb-getvar.txt; fail "getvar all failed"; }
cat /tmp/fb-getvar.txt
grep -q '(bootloader) product: *lab-phone' /tmp/fb-getvar.txt || fail "getvar all lacks the product"
grep -q '(bootloader) serialno: *LAB0003' /tmp/fb-getvar.txt || fail "getvar all lacks the serial number"
for part in boot system; do
  fastboot -s LAB0003 flash "$part" "/lab/03-fastboot/$part.img" || fail "fastboot flash $part failed"
done
while read -r part size sum; do
  got=$(sha /tmp/p3/$part.img "$size")
  [ "$got" = "$sum" ] || fail "$part: sha256 $got, expected $sum"
  note "$part: $size bytes equal the image"
done < /lab/03-fastboot/expected
downloads=$(grep -o 'download:[0-9a-f]*' /tmp/p3.log | sort | uniq -c)
echo "$downloads"
[ "$(grep -c 'download:' /tmp/p3.log)" -ge 4 ] || fail "the system image was not split"
grep -o 'download:[0-9a-f]*' /tmp/p3.log | while read -r d; do
  [ $((0x${d#download:})) -le 2097152 ] || fail "$d exceeds max-download-size"
done
stop_phone
