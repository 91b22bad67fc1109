# Host side of scenario 7: a 1 MiB vendor image for Google's client to flash in fastbootd.
set -euo pipefail
head -c 1048576 /dev/urandom > "$ARTEFACTS/vendor.img"
sha256sum < "$ARTEFACTS/vendor.img" | cut -d' ' -f1 > "$ARTEFACTS/expected"
