"""Run the end-to-end study (see README.md): calibrate this disk (or take --device), then
`flashsim validate --end-to-end` on a held-out prompt; writes results.json and figure.png
next to this file and prints the table."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flashsim.atomic import atomic_write_text
from flashsim.cli import run_json
from flashsim.cliutil import table
from flashsim.data import TEXT_DIR
from flashsim.validation.commands import END_TO_END_COLUMNS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WORK = ROOT / "results" / "end_to_end"
"""The calibration file, its profile and the prompt: not committed."""
PROMPT_LINE = 600
"""The held-out prompt starts at this line of heldout-prompts.txt: well away from the file's
start, which is the reference trace's prompt, so the decode is not the trace layouts are
judged on."""
PROMPT_CHARS = 4000
"""Text handed to the decode before it is cut to --prompt-tokens tokens (~4 chars a token)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", help="a device profile YAML (default: calibrate this disk now "
                                    "into results/end_to_end/profile.yaml, ~9 min)")
    p.add_argument("--layouts", default="sparse,bundled,windowed,windowed+bundled,coactivation")
    p.add_argument("--qd", default="1,8,32")
    p.add_argument("--tokens", type=int, default=64, help="generated tokens per decode")
    p.add_argument("--prompt-tokens", type=int, default=128, help="prompt tokens (BOS included)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--store", default="/tmp/flashsim-e2e/stores",
                   help="store folder (same disk as the calibration file)")
    p.add_argument("--out", default=str(HERE),
                   help="folder for results.json and figure.png (default: this study's)")
    return p.parse_args(argv)


def prompt_file() -> Path:
    """The held-out prompt (from PROMPT_LINE on), written into WORK."""
    lines = (TEXT_DIR / "heldout-prompts.txt").read_text(encoding="utf-8").splitlines()
    text = " ".join(line.strip() for line in lines[PROMPT_LINE - 1:] if line.strip())
    path = WORK / "prompt.txt"
    atomic_write_text(path, text[:PROMPT_CHARS])
    return path


def calibrated_profile() -> Path:
    """A standard `flashsim calibrate` of this disk (its defaults), minutes before the run."""
    out = WORK / "profile.yaml"
    run_json(["calibrate", "--file", str(WORK / "calib.bin"), "--out", str(out)])
    return out


def main_study(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    Path(args.store).mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    device = Path(args.device) if args.device else calibrated_profile()
    payload = run_json(["validate", "--end-to-end", "--prompt-file", str(prompt_file()),
                       "--prompt-tokens", str(args.prompt_tokens), "--tokens", str(args.tokens),
                       "--layouts", args.layouts, "--qd", args.qd, "--reps", str(args.reps),
                       "--store", args.store, "--build-stores", "--device", str(device),
                       "--report", str(out / "figure.png"),
                       "--save-profile", str(WORK / "profile-decode.yaml")])
    result = json.loads(payload)
    result["study"] = {"prompt": f"heldout-prompts.txt from line {PROMPT_LINE}",
                       "device_profile": str(device), "calibrated_now": not args.device}
    atomic_write_text(out / "results.json", json.dumps(result, indent=2) + "\n")
    print(f"wrote {out / 'results.json'} and {out / 'figure.png'}", file=sys.stderr)
    print(json.dumps(result["batch_gap"]), json.dumps(result["cost_models"]))
    print(table(result["rows"], END_TO_END_COLUMNS))


if __name__ == "__main__":
    main_study()
