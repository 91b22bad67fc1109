# Host side of scenario 8: a signed ZXIC package for the virtual ZX297520V3 hotspot
# (product ZX7520-SIM): a tloader ("ZX7521V1" at offset 4), a tboot uImage, a
# partition.bin that resizes imagefs and rootfs but keeps NV (nvrofs, nvrw) where the
# device has it, and two images; what the flash must then hold goes to $ARTEFACTS/expected
# as "LABEL SECTOR BYTES SHA256" lines (512-byte sectors from the start of the flash).
set -euo pipefail
. "$(dirname "$0")/../qualcomm.sh"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT

le32() { printf "\\x$(printf %02x $(($1 & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x$(printf %02x $((($1 >> 16) & 255)))\\x$(printf %02x $((($1 >> 24) & 255)))"; }
be32() { printf "\\x$(printf %02x $((($1 >> 24) & 255)))\\x$(printf %02x $((($1 >> 16) & 255)))\\x$(printf %02x $((($1 >> 8) & 255)))\\x$(printf %02x $(($1 & 255)))"; }
# field16 TEXT: TEXT NUL-padded to 16 bytes.
field16() { printf '%s' "$1"; head -c $((16 - ${#1})) /dev/zero; }

{ printf '\0\0\0\0ZX7521V1'; head -c $((8192 - 12)) /dev/urandom; } > "$src/tloader.bin"
body=$((48 * 1024))
{
  be32 $((0x27051956)); be32 0; be32 0; be32 "$body"
  be32 $((0x27EF0000)); be32 $((0x27EF0000)); be32 0; be32 0
  field16 "tboot lab"; head -c 16 /dev/zero
  head -c "$body" /dev/urandom
} > "$src/tboot.bin"

# The virtual layout (src/sim/zxic.rs) with imagefs grown and rootfs moved and shrunk.
entries=$src/entries
: > "$entries"
entry() { { field16 "$1"; field16 nand; le32 "$2"; le32 "$3"; } >> "$entries"; }
entry zloader 0 $((0x20000))
entry uboot $((0x20000)) $((0x100000))
entry nvrofs $((0x120000)) $((0x40000))
entry nvrw $((0x160000)) $((0x40000))
entry imagefs $((0x1A0000)) $((0x700000))
entry rootfs $((0x8A0000)) $((0x500000))
entry userdata $((0xDA0000)) $((0x260000))
check=0
for word in $(od -An -tu4 -v "$entries"); do check=$((check ^ word)); done
{ le32 $((0x31594876)); field16 ZX297520V3; le32 1; le32 7; le32 "$check"; cat "$entries"; } > "$src/partition.bin"

random "$src/imagefs.bin" $((3 * 1048576 + 4000))
random "$src/rootfs.bin" $((1048576 + 512))
cat > "$src/manifest.toml" <<TOML
name = "lab-zxic-stock"
version = "1.0.0"
security_version = 1
min_battery_percent = 0
[[target]]
product = "ZX7520-SIM"
[zxic]
tloader = "tloader.bin"
tboot = "tboot.bin"
partition_table = "partition.bin"
[[zxic.image]]
partition = "imagefs"
file = "imagefs.bin"
[[zxic.image]]
partition = "rootfs"
file = "rootfs.bin"
TOML
sign "$src/manifest.toml" "$ARTEFACTS/stock.flpkg"
expect "$ARTEFACTS/expected" imagefs $((0x1A0000 / 512)) "$src/imagefs.bin"
expect "$ARTEFACTS/expected" rootfs $((0x8A0000 / 512)) "$src/rootfs.bin"
