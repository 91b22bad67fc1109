#!/usr/bin/env bash
# Takes the README's screenshots of the real window: `flashline demo` under Xvfb, clicked
# with xdotool, captured with ImageMagick's `import`.
#   apt-get install xvfb xauth xdotool imagemagick
#   docs/screenshots.sh [path/to/flashline]
# The click positions are those of the window's default 1280x800 layout; if the layout
# changes, read them off the screenshots the script leaves.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/flashline}")
exec xvfb-run -a -s "-screen 0 1280x800x24" bash -euo pipefail -c '
bin=$1
work=$(mktemp -d)
"$bin" demo --dir "$work" 2>"$work/stderr" &
app=$!
trap "kill $app 2>/dev/null || true; rm -rf $work" EXIT
for _ in $(seq 100); do xdotool search --name "flashline" >/dev/null 2>&1 && break; sleep 0.2; done
sleep 3                                   # the bench identifies its devices
click() { xdotool mousemove "$1" "$2" click 1; sleep "${3:-0.5}"; }
shot() { import -window root -colors 256 "docs/$1.png"; }
click 311 12 2                            # open the demo phone package
click 60 184 3                            # tick the phone: its preflight runs
shot screenshot-preflight
click 60 184 1                            # untick it
click 527 12 2                            # open the modem/hotspot flat build
click 60 106 1                            # tick the hotspot
click 60 132 4                            # tick the dongle
click 760 415 1                           # Flash 2 devices: the confirmation opens
click 378 571 4                           # Start flashing: both switch to EDL and write
shot screenshot-flashing
' _ "$bin"
