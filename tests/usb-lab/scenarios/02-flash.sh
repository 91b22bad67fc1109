# Scenario 2: `flashline flash` over USB (libusb bulk transfers) into the phone gadget; the
# partitions hold exactly the package's images, the larger one sent as split sparse pieces.
export FLASHLINE_HOME=/tmp/home2
FLASHLINE_LOG=flashline::sim=debug start_phone /tmp/p2 --serial LAB0002 --product lab-phone --max-download-size 2097152 \
  --partition boot=2M --partition system=8M
flashline flash /lab/02-flash/stock.flpkg --device LAB0002 --trust /lab/02-flash/trust --json \
  > /tmp/flash2.json 2>&1 || { cat /tmp/flash2.json /tmp/p2.log; fail "flashline flash failed"; }
while read -r part size sum; do
  got=$(sha /tmp/p2/$part.img "$size")
  [ "$got" = "$sum" ] || fail "$part: sha256 $got, expected $sum"
  note "$part: $size bytes equal the image"
done < /lab/02-flash/expected
# The 6 MiB image went as several downloads, none over the 2 MiB limit.
grep -o 'download:[0-9a-f]*' /tmp/p2.log | sort | uniq -c
[ "$(grep -c 'download:' /tmp/p2.log)" -ge 4 ] || fail "the system image was not split"
grep -o 'download:[0-9a-f]*' /tmp/p2.log | while read -r d; do
  [ $((0x${d#download:})) -le 2097152 ] || fail "$d exceeds max-download-size"
done
# The job ended with a reboot: the phone left the bus, came back and answers again.
enabled_twice() { [ "$(grep -c 'FunctionFS event kind="enable"' /tmp/p2.log)" -ge 2 ]; }
wait_for 10 enabled_twice || fail "the phone did not come back after its reboot"
flashline info LAB0002 | grep -q 'LAB0002' || fail "the phone does not answer after its reboot"
stop_phone
