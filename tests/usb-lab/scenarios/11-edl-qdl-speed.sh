# Scenario 11 (issue 16's figure 10): the same full flat build (16 MiB: boot and modem)
# written to the same EDL gadget by `flashline recover` and by Debian's qdl, alternating,
# three runs each. Before every run boot and modem are zeroed on the gadget's side, so each
# run is a full write (flashline's digests find nothing to keep); after it the LUN must
# hold exactly the build. Wall times are the whole host processes, from the device in its
# boot ROM to the reset. The last line is machine-readable:
#   EDL-QDL-SPEED bytes=N flashline_s=A,B,C qdl_s=A,B,C flashline_median=X qdl_median=Y ratio=X/Y
export FLASHLINE_HOME=/tmp/home11
lun=/tmp/e11/lun0.img
here=/lab/11-edl-qdl-speed
flashline sim edl --usb-gadget --dir /tmp/e11 --serial LAB0011 --no-iserial > /tmp/e11.log 2>&1 &
wait_for 20 usb_device 05c6 9008 || { cat /tmp/e11.log; fail "the EDL device did not enumerate"; }
address=$(flashline devices | awk '$2 == "edl" {print $1; exit}')
case "$address" in usb:[0-9]*-[0-9]*) ;; *) fail "flashline devices does not list the device in EDL" ;; esac
note "EDL gadget at $address"

# boot (16384 sectors from 3106) and modem (49152 from 19490) are one run of sectors.
wipe() { dd if=/dev/zero of="$lun" bs=512 seek=3106 count=65536 conv=notrunc 2>/dev/null; }
devnum() { cat "$(usb_device 05c6 9008)/devnum" 2>/dev/null; }
# back_in_rom OLD: true once the device enumerated again (after the host's reset).
back_in_rom() { d=$(devnum) && [ -n "$d" ] && [ "$d" != "$1" ]; }
elapsed() { echo "$(uptime_s) $1" | awk '{printf "%.2f", $1 - $2}'; }

run_flashline() {
  flashline recover "$here/build.flpkg" --device "$address" --trust "$here/trust" --json \
    > /tmp/flash11.json 2>&1 || { tail -n 20 /tmp/flash11.json; tail -n 40 /tmp/e11.log; fail "flashline recover failed"; }
}
run_qdl() {
  (cd "$here/build" && timeout 300 qdl --storage emmc programmer.elf rawprogram0.xml patch0.xml) \
    > /tmp/qdl11.log 2>&1 || { tail -n 20 /tmp/qdl11.log; tail -n 40 /tmp/e11.log; fail "qdl failed"; }
}
# timed NAME: one run of NAME on a zeroed device; appends its seconds to NAME's list.
fl_times=""
qdl_times=""
timed() {
  wipe
  before=$(devnum)
  start=$(uptime_s)
  "run_$1"
  took=$(elapsed "$start")
  check_lun "$lun" "$here/expected"
  [ "$(le64_at "$lun" 73770)" = 4242 ] || fail "$1 did not apply the DISK patch"
  wait_for 20 back_in_rom "$before" || fail "the device did not come back after $1's reset"
  note "$1: $took s, bytes equal"
  if [ "$1" = flashline ]; then fl_times="$fl_times $took"; else qdl_times="$qdl_times $took"; fi
}

for i in 1 2 3; do
  if [ $((i % 2)) = 1 ]; then timed flashline; timed qdl; else timed qdl; timed flashline; fi
done

median() { printf '%s\n' $1 | sort -n | sed -n 2p; }
csv() { echo $1 | tr ' ' ','; }
fl=$(median "$fl_times")
q=$(median "$qdl_times")
bytes=$(awk '{n += $3} END {print n}' "$here/expected")
echo "EDL-QDL-SPEED bytes=$bytes flashline_s=$(csv "$fl_times") qdl_s=$(csv "$qdl_times") flashline_median=$fl qdl_median=$q ratio=$(echo "$fl $q" | awk '{printf "%.2f", $1 / $2}')"
