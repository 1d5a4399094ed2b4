#!/usr/bin/env bash
# The device generalization study on three real devices of this machine (needs root: blkio,
# zram). Per device, inside its testbed: a standard calibration with off-grid holdout points
# (the profile ships: flashsim/data/devices/), fio at the same holdout points into huge pages,
# and the plan-level validation in both modes (validate_device.py; its own calibration ships
# too, as NAME-validated.yaml). Then the checks and the summary (summarize.py: results.json,
# generalization.png). Run it alone: it measures time. ~30 min (DEVICES=throttled: one, ~12).
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
here=experiments/device_generalization
ship=flashsim/data/devices
hold=12k/3,48k/12,96k/6,192k/2,24k/48,640k/4,384k/24,20k/16
data=${DATA_DIR:-/var/tmp}
mkdir -p "$here/calibrate" "$here/fio" "$here/validation"
steps() {  # steps NAME DESCRIPTION: the commands run inside a testbed ({path}, {dir} filled in)
  echo "t0=\$(date +%s.%N) && flashsim calibrate --file {path} --size 2GiB --holdout $hold \
    --name $1 --description '$2' --out $ship/$1.yaml --json > $here/calibrate/$1.json \
  && echo \$(date +%s.%N) - \$t0 | bc > $here/calibrate/$1.seconds \
  && python $here/fio_holdout.py --file {path} --out $here/fio/$1.json > /dev/null \
  && python $here/validate_device.py --name $1 --profile $ship/$1.yaml \
       --store {dir}/flashsim-dg-stores --reps 5 --out $here/validation/$1.json; \
  rc=\$?; rm -rf {dir}/flashsim-dg-stores; exit \$rc"
}
only=" ${DEVICES:-virtio throttled zram-ext4} "  # DEVICES="throttled": that device alone
[[ $only == *" virtio "* ]] && flashsim device testbed run virtio --dir "$data" --size 2GiB -- \
  sh -c "$(steps local-virtio "the virtio disk of this VM: flashsim calibrate, huge-page buffers")"
[[ $only == *" throttled "* ]] && flashsim device testbed run throttled --dir "$data" --size 2GiB -- \
  sh -c "$(steps testbed-throttled-emmc "the virtio disk behind a cgroup v1 blkio throttle: 15000 IOPS, 300 MB/s (eMMC 5.1-like)")"
[[ $only == *" zram-ext4 "* ]] && flashsim device testbed run zram-ext4 --size 2GiB -- \
  sh -c "$(steps testbed-zram-ext4 "ext4 on zram0 (RAM-backed, synchronous): a random-data file read with O_DIRECT")"
for n in local-virtio testbed-throttled-emmc testbed-zram-ext4; do
  flashsim device check --profile "$ship/$n.yaml" --against-holdout --json \
    > "$here/calibrate/$n.check-holdout.json"
  flashsim device check --profile "$ship/$n.yaml" --against "$here/fio/$n.json" --json \
    > "$here/fio/$n.check.json"
done
python "$here/summarize.py"
