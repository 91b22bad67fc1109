# Host side of scenario 5: a signed Qualcomm package for the MF833V dongle.
set -euo pipefail
. "$(dirname "$0")/../qualcomm.sh"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
programmer "$src/programmer.elf" 65536
random "$src/boot.img" $((2 * 1048576 + 100))
random "$src/NON-HLOS.bin" $((3 * 1048576))
rawprogram "$src/rawprogram0.xml" boot.img NON-HLOS.bin
patch "$src/patch0.xml" "NUM_DISK_SECTORS-1."
package "$src" MF833V "$ARTEFACTS/stock.flpkg"
expect "$ARTEFACTS/expected" boot "$BOOT_START" "$src/boot.img"
expect "$ARTEFACTS/expected" modem "$MODEM_START" "$src/NON-HLOS.bin"
