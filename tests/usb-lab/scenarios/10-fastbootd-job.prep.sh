# Host side of scenario 10: a signed package for a phone with dynamic partitions: boot
# (physical, written from the bootloader), system (3 MiB, more than fastbootd's 1 MiB
# download buffer, so it goes as sparse pieces) and vendor as logical partitions, which
# only fastbootd can write. Without a `[dynamic]` layout they are resized in place in the
# phone's super, so the job cannot take the optimized (whole-super) path: it must restart
# the phone into fastbootd and find it again on the bus.
set -euo pipefail
. "$(dirname "$0")/../prep.sh"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
head -c 1048576 /dev/urandom > "$src/boot.img"
{ head -c 1048576 /dev/urandom; head -c 1048576 /dev/zero; head -c 1048576 /dev/urandom; } > "$src/system.img"
head -c 1048576 /dev/urandom > "$src/vendor.img"
cat > "$src/manifest.toml" <<TOML
name = "lab-phone-dynamic"
version = "2.1.0"
security_version = 7
min_battery_percent = 30
[[target]]
product = "lab-phone"
[[image]]
partition = "boot"
file = "boot.img"
[[image]]
partition = "system"
file = "system.img"
logical = true
[[image]]
partition = "vendor"
file = "vendor.img"
logical = true
TOML
sign "$src/manifest.toml" "$ARTEFACTS/dynamic.flpkg"
expect_images "$src" boot system vendor
