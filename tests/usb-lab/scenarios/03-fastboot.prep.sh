# Host side of scenario 3: raw images for Google's client, a 1 MiB boot image and a 6 MiB
# system image, larger than the phone's 2 MiB max-download-size.
set -euo pipefail
head -c 1048576 /dev/urandom > "$ARTEFACTS/boot.img"
{ head -c 2097152 /dev/urandom; head -c 2097152 /dev/zero; head -c 2097152 /dev/urandom; } > "$ARTEFACTS/system.img"
for image in boot system; do
  echo "$image $(stat -c %s "$ARTEFACTS/$image.img") $(sha256sum < "$ARTEFACTS/$image.img" | cut -d' ' -f1)"
done > "$ARTEFACTS/expected"
