#!/usr/bin/env bash
# fio against fio: a profile calibrated from fio's own reads of the standard grid
# (`flashsim calibrate --from-fio`, huge-page buffers like the reader's), checked against fio
# at the held-out points. On a CPU-bound device (zram) the reading program's own path is
# part of what is measured, so a profile of the reader predicts the reader and one of fio
# predicts fio; behind the throttle (DEVICE=throttled) the import is told the caps fio read
# behind (`--throttle`). Run as root, alone on the machine, after run.sh (~5 min a device).
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
here=experiments/device_generalization
device=${DEVICE:-zram-ext4}
case $device in
  zram-ext4) name=testbed-zram-ext4; bed="zram-ext4"; caps=""
    what="ext4 on zram0 read by fio (libaio, O_DIRECT, iomem=shmhuge): the standard grid, 3 rounds" ;;
  throttled) name=testbed-throttled-emmc; bed="throttled --dir ${DATA_DIR:-/var/tmp}"
    caps="--throttle 15000,300"
    what="the virtio disk behind a blkio throttle (15000 IOPS, 300 MB/s) read by fio (libaio, O_DIRECT, iomem=shmhuge): the standard grid, 3 rounds" ;;
  *) echo "DEVICE must be zram-ext4 or throttled" >&2; exit 2 ;;
esac
grid=$(python -c "print(','.join(f'{c}/{q}' for c in ('4k','8k','16k','32k','64k','128k','256k','1m') for q in (1,2,4,8,16,32,64)))")
flashsim device testbed run $bed --size 2GiB -- sh -c "\
  python $here/fio_holdout.py --file {path} --holdout $grid --rounds 3 --runtime 0.4 \
    --out $here/fio/$name.grid.json > /dev/null \
  && python $here/fio_holdout.py --file {path} --out $here/fio/$name.fio-holdout.json > /dev/null"
flashsim calibrate --from-fio $here/fio/$name.grid.json --name $name-fio $caps \
  --description "$what" --out $here/fio/$name-fio.yaml --json > $here/fio/$name-fio.calibrate.json
flashsim device check --profile $here/fio/$name-fio.yaml \
  --against $here/fio/$name.fio-holdout.json --json > $here/fio/$name-fio.check.json
python "$here/summarize.py" > /dev/null
