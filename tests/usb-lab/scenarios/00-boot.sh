# The lab itself: the guest has a virtual USB device controller and a static flashline.
[ -e /sys/class/udc/dummy_udc.0 ] || fail "no dummy_udc.0"
flashline --version
start_phone /tmp/phone0
note "phone enumerated at $(usb_device 18d1 4ee0)"
stop_phone
