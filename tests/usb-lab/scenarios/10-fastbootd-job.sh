# Scenario 10: flashline's own `flash` job of a dynamic-partition package over USB. The
# job restarts the phone into fastbootd (`reboot-fastboot`): the gadget leaves the bus and
# comes back as 18d1:4ee0 with the same serial and fastbootd's product string; flashline
# finds it again by its serial, checks it answers `is-userspace: yes`, goes back to the
# bootloader for boot, switches the slot, re-enters fastbootd and resizes and flashes the
# logical partitions system_b and vendor_b (system in sparse pieces for fastbootd's 1 MiB
# buffer). Their bytes are read back out of super through its LP extents.
export FLASHLINE_HOME=/tmp/home10
FLASHLINE_LOG=flashline::sim=debug start_phone /tmp/p10 --serial LAB0010 --product lab-phone \
  --slots --dynamic --super-size 32M --logical system=8M --logical vendor=4M \
  --partition boot=2M --max-download-size 2097152 --fastbootd-max-download-size 1048576
flashline flash /lab/10-fastbootd-job/dynamic.flpkg --device LAB0010 \
  --trust /lab/10-fastbootd-job/trust --json > /tmp/flash10.json 2>&1 \
  || { cat /tmp/flash10.json /tmp/p10.log; fail "flashline flash failed"; }
grep -q '"outcome":"success"' /tmp/flash10.json || { cat /tmp/flash10.json; fail "the job did not succeed"; }

# The job went through fastbootd on USB: the phone was asked, re-enumerated each time
# (a FunctionFS enable per enumeration), and took the fastbootd commands there.
grep -o '"step":"[a-z_-]*:[^"]*' /tmp/flash10.json | cut -c9- | cut -d: -f1 > /tmp/steps10.txt
cat /tmp/steps10.txt
[ "$(grep -c '^reboot-fastboot$' /tmp/steps10.txt)" -eq 2 ] || fail "expected two reboot-fastboot steps"
# Enumerations: at start, in fastbootd to read super, back in the bootloader, in fastbootd
# to write, and after the job's final reboot.
enabled() { [ "$(grep -c 'FunctionFS event kind="enable"' /tmp/p10.log)" -ge 5 ]; }
wait_for 10 enabled || fail "the gadget enumerated $(grep -c 'FunctionFS event kind="enable"' /tmp/p10.log) times, expected 5"
for command in reboot-fastboot set_active:b resize-logical-partition:system_b flash:system_b \
  resize-logical-partition:vendor_b flash:vendor_b; do
  grep -q "$command" /tmp/p10.log || fail "the phone never got $command"
done
# The whole super was not flashed: without a layout, fastbootd writes the partitions.
! grep -q 'flash:super' /tmp/p10.log || fail "super was flashed whole"
[ "$(grep -c 'command=flash:system_b' /tmp/p10.log)" -ge 2 ] || fail "system was not split for fastbootd"
grep -o 'download:[0-9a-f]*' /tmp/p10.log | while read -r d; do
  [ $((0x${d#download:})) -le 2097152 ] || fail "$d exceeds max-download-size"
done

# The bytes: boot_b as a file, system_b and vendor_b through super's LP extents (metadata
# slot 1, slot b's).
flashline lp dump /tmp/p10/super.img --slot 1 > /tmp/p10-lp.txt
cat /tmp/p10-lp.txt
# logical NAME BYTES: sha256 of the first BYTES of logical partition NAME in super.
logical() {
  awk -v p="  $1: " 'index($0, p) == 1 { on = 1; next } /^  [^ ]/ { on = 0 } on' /tmp/p10-lp.txt \
    | sed -n 's/.*super sectors \([0-9]*\)\.\.\([0-9]*\).*/\1 \2/p' \
    | while read -r first end; do
        dd if=/tmp/p10/super.img bs=512 skip="$first" count=$((end - first)) 2>/dev/null
      done | head -c "$2" | sha256sum | cut -d' ' -f1
}
while read -r part size sum; do
  if [ "$part" = boot ]; then
    got=$(sha /tmp/p10/boot_b.img "$size")
  else
    got=$(logical "${part}_b" "$size")
  fi
  [ "$got" = "$sum" ] || fail "${part}_b: sha256 $got, expected $sum"
  note "${part}_b: $size bytes equal the image"
done < /lab/10-fastbootd-job/expected
stop_phone
