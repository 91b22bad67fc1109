# Host side of scenario 5: a signed Qualcomm package for the MF833V dongle.
set -euo pipefail
. "$(dirname "$0")/../qualcomm.sh"
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
stock_build "$src"
