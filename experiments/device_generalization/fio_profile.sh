#!/usr/bin/env bash
# fio against fio on zram: a profile calibrated from fio's own reads of the standard grid
# (`flashsim calibrate --from-fio`, huge-page buffers like the reader's), checked against fio
# at the held-out points. On a CPU-bound device the reading program's own path is part of
# what is measured, so a profile of the reader predicts the reader and one of fio predicts
# fio. Run as root, alone on the machine, after run.sh (~5 min).
set -euo pipefail
cd "$(dirname "$0")/../.."
. .venv/bin/activate
here=experiments/device_generalization
grid=$(python -c "print(','.join(f'{c}/{q}' for c in ('4k','8k','16k','32k','64k','128k','256k','1m') for q in (1,2,4,8,16,32,64)))")
flashsim device testbed run zram-ext4 --size 2GiB -- sh -c "\
  python $here/fio_holdout.py --file {path} --holdout $grid --rounds 3 --runtime 0.4 \
    --out $here/fio/testbed-zram-ext4.grid.json > /dev/null \
  && python $here/fio_holdout.py --file {path} --out $here/fio/testbed-zram-ext4.fio-holdout.json > /dev/null"
flashsim calibrate --from-fio $here/fio/testbed-zram-ext4.grid.json --name testbed-zram-ext4-fio \
  --description "ext4 on zram0 read by fio (libaio, O_DIRECT, iomem=shmhuge): the standard grid, 3 rounds" \
  --out $here/fio/testbed-zram-ext4-fio.yaml --json > $here/fio/testbed-zram-ext4-fio.calibrate.json
flashsim device check --profile $here/fio/testbed-zram-ext4-fio.yaml \
  --against $here/fio/testbed-zram-ext4.fio-holdout.json --json > $here/fio/testbed-zram-ext4-fio.check.json
python "$here/summarize.py" > /dev/null
