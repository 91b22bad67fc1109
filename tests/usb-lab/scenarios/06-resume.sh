# Scenario 6: the phone drops off the USB bus in the middle of a download (the gadget is
# unbound, as a pulled cable); the job fails with a clear error and leaves its journal; the
# phone comes back, the same `flashline flash` resumes (the verified boot image is kept) and
# the partitions hold exactly the images.
export FLASHLINE_HOME=/tmp/home6
# Cut after 2 MiB of download data: 1 MiB into the system image's first 2 MiB piece.
FLASHLINE_LOG=flashline::sim=debug start_phone /tmp/p6 --serial LAB0006 --product lab-phone \
  --max-download-size 2097152 --partition boot=2M --partition system=8M \
  --fault disconnect@bytes=2M
flash() {
  flashline flash /lab/06-resume/stock.flpkg --device LAB0006 --trust /lab/06-resume/trust \
    --json > "$1" 2>&1
}
enabled() { [ "$(grep -c 'FunctionFS event kind="enable"' /tmp/p6.log)" -ge "$1" ]; }

if flash /tmp/flash6a.json; then
  cat /tmp/flash6a.json
  fail "the first flash succeeded although the phone was unplugged mid-download"
else
  status=$?
fi
note "interrupted: $(grep -o '"error":"[^"]*"' /tmp/flash6a.json | tail -n1)"
[ "$status" = 5 ] || { cat /tmp/flash6a.json; fail "the interrupted flash exited with $status, not 5 (device error)"; }
grep -q 'unbind' /tmp/p6.log || fail "the phone never left the bus"
grep -q '"error":"[^"]*the device disconnected' /tmp/flash6a.json \
  || fail "the error does not say the device disconnected"
ls /tmp/home6/journal/* > /dev/null 2>&1 || fail "no journal in /tmp/home6/journal"
report=$(grep -o '"report":"[^"]*"' /tmp/flash6a.json | cut -d'"' -f4)
tr -d ' \n' < "$report" | grep -q '"incomplete":"system"' \
  || { cat "$report"; fail "the report does not name system as incomplete"; }

note "waiting for the phone to come back"
wait_for 10 enabled 2 || fail "the phone did not come back"
flash /tmp/flash6b.json || { cat /tmp/flash6b.json; fail "the resumed flash failed"; }
report=$(grep -o '"report":"[^"]*"' /tmp/flash6b.json | cut -d'"' -f4)
tr -d ' \n' < "$report" > /tmp/report6b.txt
grep -q '"target":"boot"[^}]*"status":"kept"' /tmp/report6b.txt \
  || grep -q '"status":"kept"[^}]*"target":"boot"' /tmp/report6b.txt \
  || { cat "$report"; fail "the resumed run did not keep boot"; }
while read -r part size sum; do
  got=$(sha /tmp/p6/$part.img "$size")
  [ "$got" = "$sum" ] || fail "$part: sha256 $got, expected $sum"
  note "$part: $size bytes equal the image"
done < /lab/06-resume/expected
stop_phone
