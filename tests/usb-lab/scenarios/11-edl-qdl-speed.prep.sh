# Host side of scenario 11: one flat build for the EDL simulator's default eMMC layout that
# fills boot (8 MiB) and modem (24 MiB) with random bytes, with a DISK patch of a plain
# number both hosts pass on as it is: the raw files for Debian's qdl, and the same files
# signed into a package for flashline; what the LUN must then hold.
set -euo pipefail
. "$(dirname "$0")/../qualcomm.sh"
build=$ARTEFACTS/build
mkdir -p "$build"
programmer "$build/programmer.elf" 65536
random "$build/boot.img" $((16384 * 512))
random "$build/NON-HLOS.bin" $((49152 * 512))
rawprogram "$build/rawprogram0.xml" boot.img NON-HLOS.bin
patch "$build/patch0.xml" 4242
expect "$ARTEFACTS/expected" boot "$BOOT_START" "$build/boot.img"
expect "$ARTEFACTS/expected" modem "$MODEM_START" "$build/NON-HLOS.bin"
package "$build" MF833V "$ARTEFACTS/build.flpkg"
rm -rf "$build"/keys.* "$build/manifest.toml"
