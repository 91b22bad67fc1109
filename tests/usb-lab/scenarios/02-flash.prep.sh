# Host side of scenario 2: a package with a raw 1 MiB boot image and a 6 MiB system image,
# larger than the phone's 2 MiB max-download-size, so it goes as a split sparse image.
set -euo pipefail
. "$(dirname "$0")/../prep.sh"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
head -c 1048576 /dev/urandom > "$src/boot.img"
{ head -c 2097152 /dev/urandom; head -c 2097152 /dev/zero; head -c 2097152 /dev/urandom; } > "$src/system.img"
cat > "$src/manifest.toml" <<TOML
name = "lab-phone-stock"
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
TOML
sign "$src/manifest.toml" "$ARTEFACTS/stock.flpkg"
expect_images "$src" boot system
