# Host side of scenario 4: a signed Qualcomm package for flashline (programmer, boot and
# modem images, a DISK patch with an expression flashline evaluates), and a second flat
# build with other images for qdl (whose patches are plain numbers: qdl passes them as they
# are, and the virtual programmer takes numbers).
set -euo pipefail
. "$(dirname "$0")/../qualcomm.sh"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
stock_build "$src"

qdl=$ARTEFACTS/qdl
mkdir -p "$qdl"
cp "$src/programmer.elf" "$qdl/prog_firehose_ddr.elf"
random "$qdl/boot.img" $((1048576 + 4000))
random "$qdl/NON-HLOS.bin" $((2 * 1048576))
rawprogram "$qdl/rawprogram0.xml" boot.img NON-HLOS.bin
patch "$qdl/patch0.xml" 4242
expect "$qdl/expected" boot "$BOOT_START" "$qdl/boot.img"
expect "$qdl/expected" modem "$MODEM_START" "$qdl/NON-HLOS.bin"
