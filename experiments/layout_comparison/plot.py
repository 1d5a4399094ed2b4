"""Figure of the layout comparison study from its committed results.parquet.

Left: DRAM-resident share of the FFN vs I/O time per token at QD 32 (one marker per layout and
window). Right: throughput vs mean read size (every run). One row per device.

    .venv/bin/python experiments/layout_comparison/plot.py [--results R] [--out figure.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

HERE = Path(__file__).resolve().parent


def load(path: Path) -> pd.DataFrame:
    """The sweep's combined results with a short device name and window 0 for windowless layouts."""
    d = pd.read_parquet(path)
    d = d[d.status == "ok"].copy()
    d["dev"] = d.device.str.extract(r"([^/]+)\.yaml$", expand=False)
    d["win"] = d.window.fillna(0).astype(int)
    return d


def figure(d: pd.DataFrame, out: Path, qd: int = 32) -> None:
    """Write the two-panel-per-device figure to `out`."""
    devs = sorted(d.dev.unique())
    layouts = list(dict.fromkeys(d.layout))
    cmap = plt.get_cmap("tab10")
    fig, axes = plt.subplots(len(devs), 2, figsize=(11, 4 * len(devs)), squeeze=False)
    for row, dev in zip(axes, devs):
        x = d[d.dev == dev]
        for i, name in enumerate(layouts):
            s = x[(x.layout == name) & (x.queue_depth == qd)].sort_values("win")
            row[0].plot(100 * s.dram_resident_fraction, s.io_ms_mean, "o-", color=cmap(i % 10),
                        ms=3, label=name)
            a = x[x.layout == name]
            row[1].scatter(a.mean_read_bytes / 1024, a.throughput_mb_s, s=8, color=cmap(i % 10))
        row[0].set(xlabel="FFN resident in DRAM (%)", ylabel="I/O ms per token", yscale="log",
                   title=f"{dev}: DRAM vs I/O at QD {qd} (windows 1-8)")
        row[1].set(xlabel="mean read size (KiB)", ylabel="throughput (MB/s)", xscale="log",
                   yscale="log", title=f"{dev}: throughput vs read size (QD 1-64)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=70)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default=str(HERE / "results.parquet"))
    ap.add_argument("--out", default=str(HERE / "figure.png"))
    args = ap.parse_args()
    figure(load(Path(args.results)), Path(args.out))


if __name__ == "__main__":
    main()
