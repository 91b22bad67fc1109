# Helpers for USB lab scenarios (sourced by the guest's /init before each scenario).
# A scenario runs with `set -e`: any failing command fails it; `fail MSG` says why.
set -e
export FLASHLINE_LOG=${FLASHLINE_LOG:-warn} NO_COLOR=1
LAB=/lab

fail() { echo "FAIL: $*"; exit 1; }
note() { echo "-- $*"; }

# wait_for SECONDS COMMAND...: polls every 0.2 s until COMMAND succeeds (its stdout is
# dropped); returns 1 (and says so) if it does not within SECONDS.
wait_for() {
  local limit=$1 i=0
  shift
  while ! "$@" >/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge $((limit * 5)) ]; then
      echo "timed out after ${limit}s waiting for: $*"
      return 1
    fi
    sleep 0.2
  done
}

# usb_device VID PID: prints the sysfs directory of the attached USB device with these IDs.
usb_device() {
  local d
  for d in /sys/bus/usb/devices/*; do
    [ -f "$d/idVendor" ] || continue
    # A device leaving while we look has no attributes any more: not a match.
    if [ "$(cat "$d/idVendor" 2>/dev/null)" = "$1" ] && [ "$(cat "$d/idProduct" 2>/dev/null)" = "$2" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

# start_phone DIR [ARGS...]: starts `flashline sim phone --usb-gadget` in the background
# (its output in DIR.log) and waits until it is on the bus. Sets PHONE_PID.
start_phone() {
  local dir=$1
  shift
  PHONE_DIR=$dir
  mkdir -p "$dir"
  flashline sim phone --usb-gadget --dir "$dir" "$@" > "$dir.log" 2>&1 &
  PHONE_PID=$!
  if ! wait_for 20 phone_enumerated; then
    cat "$dir.log"
    fail "the phone did not enumerate"
  fi
}

# phone_enumerated: true once the phone is on the bus; fails the scenario if it exited.
phone_enumerated() {
  if ! kill -0 "$PHONE_PID" 2>/dev/null; then
    cat "$PHONE_DIR.log" >&2
    echo "FAIL: the phone exited" >&2
    exit 1
  fi
  usb_device 18d1 4ee0
}

# stop_phone: stops the phone started by start_phone (SIGTERM) and checks that it removed
# its gadget: it left the bus and configfs.
stop_phone() {
  kill "$PHONE_PID"
  wait "$PHONE_PID" || fail "the phone exited with $? on SIGTERM"
  ! usb_device 18d1 4ee0 > /dev/null || fail "the phone is still on the bus after SIGTERM"
  ! ls -d /sys/kernel/config/usb_gadget/* > /dev/null 2>&1 \
    || fail "gadgets left in configfs: $(ls /sys/kernel/config/usb_gadget)"
}

# remove_gadgets: removes every configfs gadget a killed simulator left behind.
remove_gadgets() {
  local g f
  for g in /sys/kernel/config/usb_gadget/*; do
    [ -d "$g" ] || continue
    echo "" > "$g/UDC" 2>/dev/null || true
    for f in "$g"/configs/*/*.*; do [ -L "$f" ] && rm "$f"; done
    for f in "$g"/configs/*/strings/*; do [ -d "$f" ] && rmdir "$f"; done
    for f in "$g"/configs/*; do [ -d "$f" ] && rmdir "$f"; done
    for f in /tmp/flashline-ffs-*; do [ -d "$f" ] && { umount "$f" 2>/dev/null || true; rmdir "$f"; }; done
    for f in "$g"/functions/*; do [ -d "$f" ] && rmdir "$f"; done
    for f in "$g"/strings/*; do [ -d "$f" ] && rmdir "$f"; done
    rmdir "$g"
  done
}

# sha FILE [BYTES]: SHA-256 of FILE, or of its first BYTES bytes.
sha() {
  if [ -n "$2" ]; then
    head -c "$2" "$1" | sha256sum | cut -d' ' -f1
  else
    sha256sum "$1" | cut -d' ' -f1
  fi
}

# check_lun LUN EXPECTED: every "LABEL START BYTES SHA256" line of EXPECTED matches the
# bytes at sector START of the LUN file.
check_lun() {
  local label start size sum got
  while read -r label start size sum; do
    got=$(dd if="$1" bs=512 skip="$start" count=$(( (size + 511) / 512 )) 2>/dev/null | head -c "$size" | sha256sum | cut -d' ' -f1)
    [ "$got" = "$sum" ] || fail "$label: sha256 $got at sector $start, expected $sum"
    note "$label: $size bytes at sector $start equal the image"
  done < "$2"
}

# le64_at LUN SECTOR: the 8 bytes at the start of SECTOR, as a little-endian number.
le64_at() {
  dd if="$1" bs=512 skip="$2" count=1 2>/dev/null | head -c 8 | od -An -tu8 | tr -d ' '
}

# uptime_s: seconds since boot, with hundredths (for wall times in the log).
uptime_s() { cut -d' ' -f1 /proc/uptime; }
