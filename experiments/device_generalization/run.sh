#!/usr/bin/env bash
# Standard calibration (with off-grid held-out points) of the three testbed devices, then the
# model and the interpolation baseline on the held-out points. Needs root (blkio, zram).
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
here=experiments/device_generalization
hold=12k/3,48k/12,96k/6,192k/2,24k/48,640k/4,384k/24,20k/16
data=${DATA_DIR:-/var/tmp}
mkdir -p "$here/profiles"
cal() {  # cal NAME DESCRIPTION FILE
  flashsim calibrate --file "$3" --size 2GiB --holdout "$hold" --name "$1" \
    --description "$2" --out "$here/profiles/$1.yaml" --json > "$here/profiles/$1.calibrate.json"
}
cal virtio "this VM's virtio disk, standard flashsim calibrate" "$data/flashsim-calib.bin"
rm -f "$data/flashsim-calib.bin"
flashsim device testbed run throttled --dir "$data" --size 2GiB -- \
  flashsim calibrate --file {path} --size 2GiB --holdout "$hold" --name throttled-emmc \
  --description "virtio disk behind a cgroup v1 blkio throttle: 15000 IOPS, 300 MB/s (eMMC-like)" \
  --out "$here/profiles/throttled-emmc.yaml" --json > "$here/profiles/throttled-emmc.calibrate.json"
flashsim device testbed run zram --size 2GiB -- \
  flashsim calibrate --file {path} --size 2GiB --holdout "$hold" --name zram \
  --description "zram0 filled with random data, read with O_DIRECT" \
  --out "$here/profiles/zram.yaml" --json > "$here/profiles/zram.calibrate.json"
for n in virtio throttled-emmc zram; do
  flashsim device check --profile "$here/profiles/$n.yaml" --against-holdout
done
