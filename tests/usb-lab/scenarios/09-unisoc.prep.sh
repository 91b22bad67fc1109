# Host side of scenario 9: a signed Unisoc package (a [unisoc] manifest: FDL1 and FDL2 with
# their load addresses, a boot and a system image, and an l_fixnv1 image that must NOT be
# written: NV is kept unless --write-nv), and the expected partition contents.
set -euo pipefail
. "$(dirname "$0")/../prep.sh"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
head -c 9000 /dev/urandom > "$src/fdl1.bin"
head -c 70000 /dev/urandom > "$src/fdl2.bin"
head -c $((1048576 + 4000)) /dev/urandom > "$src/boot.img"
head -c $((3 * 1048576)) /dev/urandom > "$src/system.img"
head -c 65536 /dev/urandom > "$src/nv.bin"
cat > "$src/manifest.toml" <<TOML
name = "lab-unisoc-stock"
version = "1.0.0"
security_version = 1
min_battery_percent = 0
[[target]]
product = "unisoc-demo-hotspot"
[unisoc]
fdl1 = "fdl1.bin"
fdl1_address = 0x5500
fdl2 = "fdl2.bin"
fdl2_address = 0x9efffe00
[unisoc.partitions]
boot = "boot.img"
system = "system.img"
l_fixnv1 = "nv.bin"
TOML
sign "$src/manifest.toml" "$ARTEFACTS/stock.flpkg"
expect_images "$src" boot system
