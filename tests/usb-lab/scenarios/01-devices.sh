# Scenario 1: `flashline devices` lists the phone on USB with its serial number, and
# `flashline devices --watch` sees the gadget unplugged (unbound) and plugged in (rebound).
start_phone /tmp/p1 --serial LAB0001 --product lab-phone --partition boot=1M

listing=$(flashline devices)
echo "$listing"
echo "$listing" | grep -Eq '^usb:1-1 +fastboot +lab-phone +LAB0001$' \
  || fail "flashline devices does not list usb:1-1 fastboot lab-phone LAB0001"
flashline devices --json | tr -d ' \n' | grep -q '"address":"usb:1-1","mode":"fastboot","vid":6353,"pid":20192,"product":"lab-phone","serial":"LAB0001"' \
  || fail "flashline devices --json lacks the phone"

flashline devices --watch > /tmp/watch.txt 2>&1 &
watcher=$!
flashline devices --watch --json > /tmp/watch.json 2>&1 &
json_watcher=$!
count() { grep -Ec "$1" "$2" || true; }
arrivals() { [ "$(count '^arrived usb:1-1 .*LAB0001' /tmp/watch.txt)" = "$1" ]; }
departures() { [ "$(count '^left +usb:1-1 .*LAB0001' /tmp/watch.txt)" = "$1" ]; }
wait_for 10 arrivals 1 || fail "the watcher did not report the phone present"

gadget=/sys/kernel/config/usb_gadget/flashline-phone-LAB0001
udc=$(cat "$gadget/UDC")
note "unplugging (unbinding from $udc)"
echo "" > "$gadget/UDC"
wait_for 10 departures 1 || fail "the watcher did not report the phone leaving"
usb_device 18d1 4ee0 && fail "the phone is still on the bus"
flashline devices | grep -q LAB0001 && fail "flashline devices still lists the phone"

note "plugging in again"
echo "$udc" > "$gadget/UDC"
wait_for 10 arrivals 2 || fail "the watcher did not report the phone coming back"
json_arrivals() { [ "$(count '"event":"arrived","address":"usb:1-1"' /tmp/watch.json)" = 2 ]; }
wait_for 10 json_arrivals || fail "the JSON watcher did not report both arrivals"
grep -q '"event":"left","address":"usb:1-1".*"serial":"LAB0001"' /tmp/watch.json \
  || fail "the JSON watcher did not report the departure"
kill "$watcher" "$json_watcher"
cat /tmp/watch.txt

# The phone serves the host again after being plugged back in.
flashline info LAB0001 | tee /tmp/info.txt
grep -q lab-phone /tmp/info.txt || fail "flashline info does not reach the replugged phone"
stop_phone
