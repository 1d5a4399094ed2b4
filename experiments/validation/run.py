"""Run the validation study described by study.yaml (see README.md); prints the table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from flashsim.atomic import atomic_write_text
from flashsim.cli import run_json
from flashsim.cliutil import table
from flashsim.validation.commands import VALIDATE_COLUMNS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def argv_from(cfg: dict) -> list[str]:
    """The `flashsim validate` command line the study's YAML describes."""
    argv = ["validate", "--store", cfg["store"], "--build-stores",
            "--layouts", ",".join(cfg["layouts"]),
            "--qd", ",".join(str(q) for q in cfg["qd"]), "--reps", str(cfg["reps"]),
            "--calibrate-on", cfg.get("calibrate_on", "file"),
            "--reader-engine", cfg.get("reader_engine", "auto")]
    for key, flag in (("trace", "--trace"), ("tokens", "--tokens"), ("report", "--report"),
                      ("device", "--device")):
        if cfg.get(key) is not None:
            argv += [flag, str(cfg[key])]
    if cfg.get("calibrate"):
        argv.append("--calibrate")
    if cfg.get("calibration_batch_reads") is not None:
        argv += ["--calibration-batch-reads",
                 ",".join(str(n) for n in cfg["calibration_batch_reads"]) or "none"]
    if cfg.get("with_fio"):
        argv.append("--with-fio")
    return argv


if __name__ == "__main__":
    cfg = yaml.safe_load((HERE / "study.yaml").read_text())
    Path(cfg["store"]).mkdir(parents=True, exist_ok=True)
    argv = argv_from(cfg)
    output = run_json(argv)
    out = Path(cfg.get("json") or HERE / "results.json")
    out = out if out.is_absolute() else ROOT / out
    atomic_write_text(out, output)  # read by notebooks/validation.ipynb
    print(f"wrote {out}", file=sys.stderr)
    payload = json.loads(output)
    cols = VALIDATE_COLUMNS + [("dispatch_ms_p50", "dispatch ms", ".3f"),
                             ("fio_ms_per_token", "fio ms/tok", ".3f"),
                             ("predicted_stream_ms_per_token", "pred stream", ".3f")]
    print(json.dumps(payload["profile"]["params"]))
    print(table(payload["rows"], cols))
