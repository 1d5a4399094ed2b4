#!/bin/sh
# Five rounds of the grid (each round all points; rounds interleave drift over points),
# then the profile. Needs a file made by `flashsim calibrate` (random data, 2 GiB).
set -e
cd "$(dirname "$0")"
: "${FLASHSIM_FIO_FILE:=/work/scratch/calib.bin}"
export FLASHSIM_FIO_FILE
for r in 1 2 3 4 5; do
  fio --output-format=json --output=round$r.json randread-grid.fio
  # committed copies: the same JSON with whitespace compacted (python json.dumps, separators=(",", ":"))
done
flashsim calibrate --from-fio round?.json --out ../local-virtio-fio.yaml \
  --name local-virtio-fio \
  --description "This machine's virtio disk (ext4 on /dev/vda), measured with fio (libaio, direct=1) over a 2 GiB file of random data"
