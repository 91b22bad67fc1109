# Host-side helpers every scenario's prep script may use (sourced): signing a package for
# the lab and recording the bytes the guest must find.

# sign MANIFEST OUT: packs MANIFEST into OUT with a key made for this run, and puts the
# public key in a trust folder next to OUT. The demo key opens virtual devices only, and a
# gadget on the lab's USB bus is a real device to flashline.
sign() {
  local keys
  keys=$(mktemp -d "$(dirname "$1")/keys.XXXXXX")
  "$FLASHLINE" key gen --name lab-release --out "$keys" > /dev/null
  "$FLASHLINE" pack "$1" --key "$keys/lab-release.key" -o "$2"
  mkdir -p "$(dirname "$2")/trust"
  cp "$keys/lab-release.pub" "$(dirname "$2")/trust/"
}

# expect_images DIR NAME…: one line per DIR/NAME.img in $ARTEFACTS/expected, with its
# name, size and SHA-256.
expect_images() {
  local dir=$1 image
  shift
  for image in "$@"; do
    echo "$image $(stat -c %s "$dir/$image.img") $(sha256sum < "$dir/$image.img" | cut -d' ' -f1)"
  done > "$ARTEFACTS/expected"
}
