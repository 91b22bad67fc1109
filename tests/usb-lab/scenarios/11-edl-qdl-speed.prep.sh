# Host side of scenario 11: one flat build for the EDL simulator's default eMMC layout that
# writes 4 MiB of random bytes to boot and 12 MiB to modem (16 MiB: six full writes of it
# fit the lab's 180 s per scenario under TCG), with a DISK patch of a plain
# number both hosts pass on as it is: the raw files for Debian's qdl, and the same files
# signed into a package for flashline; what the LUN must then hold.
set -euo pipefail
. "$(dirname "$0")/../qualcomm.sh"
build=$ARTEFACTS/build
mkdir -p "$build"
programmer "$build/programmer.elf" 65536
random "$build/boot.img" $((4 * 1048576))
random "$build/NON-HLOS.bin" $((12 * 1048576))
rawprogram "$build/rawprogram0.xml" boot.img NON-HLOS.bin
patch "$build/patch0.xml" 4242
expect "$ARTEFACTS/expected" boot "$BOOT_START" "$build/boot.img"
expect "$ARTEFACTS/expected" modem "$MODEM_START" "$build/NON-HLOS.bin"
package "$build" MF833V "$ARTEFACTS/build.flpkg"
rm -rf "$build"/keys.* "$build/manifest.toml"
