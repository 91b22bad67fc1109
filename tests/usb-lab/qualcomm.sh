# Host-side helpers for the Qualcomm scenarios' prep scripts (sourced): a programmer ELF,
# random images, and flat builds (rawprogram/patch) for the virtual EDL device's default
# eMMC layout: 512-byte sectors, one 64 MiB LUN, partitions laid out from LBA 34 in the
# order sbl1 (1024 sectors), aboot (2048), boot (16384), modem (49152), modemst1, modemst2,
# fsg (1024 each), fsc (8), persist (2048), userdata (32768).
. "$(dirname "${BASH_SOURCE[0]}")/prep.sh"
BOOT_START=3106
MODEM_START=19490
USERDATA_START=73770
LUN_SECTORS=131072

# le64 N: N as 8 little-endian bytes.
le64() {
  local i
  for i in 0 1 2 3 4 5 6 7; do
    printf "\\x$(printf %02x $(( ($1 >> (8 * i)) & 255 )))"
  done
}

# programmer FILE BYTES: an ELF64 file with one loadable segment of BYTES random bytes.
# The virtual device (no secure boot) runs any programmer whose ELF structure is sound.
programmer() {
  local file=$1 size=$2
  {
    printf '\x7fELF\x02\x01\x01\x00'; le64 0          # 64-bit, little-endian, SysV
    printf '\x02\x00\xb7\x00\x01\x00\x00\x00'          # ET_EXEC, AArch64, version 1
    le64 0; le64 64; le64 0                            # entry, phoff, shoff
    printf '\x00\x00\x00\x00\x40\x00\x38\x00\x01\x00\x40\x00\x00\x00\x00\x00'
    printf '\x01\x00\x00\x00\x05\x00\x00\x00'          # PT_LOAD, R+X
    le64 120; le64 $((0x08000000)); le64 $((0x08000000)); le64 "$size"; le64 "$size"; le64 4096
    head -c "$size" /dev/urandom
  } > "$file"
}

# random FILE BYTES
random() { head -c "$2" /dev/urandom > "$1"; }

# rawprogram FILE BOOT_FILE MODEM_FILE: writes both images at their partitions' sectors.
rawprogram() {
  cat > "$1" <<XML
<?xml version="1.0" ?>
<data>
  <program SECTOR_SIZE_IN_BYTES="512" file_sector_offset="0" filename="$2" label="boot" num_partition_sectors="16384" physical_partition_number="0" start_sector="$BOOT_START" />
  <program SECTOR_SIZE_IN_BYTES="512" file_sector_offset="0" filename="$3" label="modem" num_partition_sectors="49152" physical_partition_number="0" start_sector="$MODEM_START" />
</data>
XML
}

# patch FILE VALUE: one DISK patch, the 8 bytes at the start of userdata set to VALUE.
patch() {
  cat > "$1" <<XML
<?xml version="1.0" ?>
<patches>
  <patch SECTOR_SIZE_IN_BYTES="512" byte_offset="0" filename="DISK" physical_partition_number="0" size_in_bytes="8" start_sector="$USERDATA_START" value="$2" what="last sector of the disk" />
</patches>
XML
}

# expect FILE LABEL START IMAGE: appends "LABEL START BYTES SHA256" for the guest to check.
expect() {
  echo "$2 $3 $(stat -c %s "$4") $(sha256sum < "$4" | cut -d' ' -f1)" >> "$1"
}

# package DIR PRODUCT OUT: packs DIR (programmer.elf, rawprogram0.xml, patch0.xml and the
# images) for PRODUCT into OUT, signed as `sign` does.
package() {
  local dir=$1 product=$2 out=$3
  cat > "$dir/manifest.toml" <<TOML
name = "lab-modem-stock"
version = "1.0.12"
security_version = 3
min_battery_percent = 25
[[target]]
product = "$product"
[qualcomm]
programmer = "programmer.elf"
rawprogram = ["rawprogram0.xml"]
patch = ["patch0.xml"]
TOML
  sign "$dir/manifest.toml" "$out"
}

# stock_build SRC: the MF833V flat build both EDL scenarios flash with flashline (boot and
# modem images, a DISK patch flashline evaluates), packed into $ARTEFACTS/stock.flpkg, with
# what the LUN must then hold in $ARTEFACTS/expected.
stock_build() {
  local src=$1
  programmer "$src/programmer.elf" 65536
  random "$src/boot.img" $((2 * 1048576 + 100))
  random "$src/NON-HLOS.bin" $((3 * 1048576))
  rawprogram "$src/rawprogram0.xml" boot.img NON-HLOS.bin
  patch "$src/patch0.xml" "NUM_DISK_SECTORS-1."
  package "$src" MF833V "$ARTEFACTS/stock.flpkg"
  expect "$ARTEFACTS/expected" boot "$BOOT_START" "$src/boot.img"
  expect "$ARTEFACTS/expected" modem "$MODEM_START" "$src/NON-HLOS.bin"
}
