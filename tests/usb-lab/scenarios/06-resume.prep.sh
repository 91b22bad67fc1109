# Host side of scenario 6: the same kind of package as scenario 2 (its own random images).
exec bash "$(dirname "$0")/02-flash.prep.sh"
