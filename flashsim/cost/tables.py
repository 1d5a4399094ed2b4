"""Paper-style tables (Table 2: I/O; Table 3: per-token parts) and the comparison figure.

Shared by `flashsim compare` and the main job, so both print the same columns.
"""

from __future__ import annotations

import numpy as np

from ..figures import figure_format, new_figure, save_figure

TABLE2_COLUMNS = [("layout", "layout", "s"), ("dram_resident_mb", "DRAM MB", ".2f"),
           ("mb_per_token", "MB/token", ".3f"), ("reads_per_token", "reads/token", ".0f"),
           ("mean_read_kib", "read KiB", ".1f"), ("read_amplification", "ampl", ".2f"),
           ("throughput_mb_s", "MB/s", ".0f"), ("io_ms_p50", "I/O ms p50", ".3f"),
           ("io_ms_p99", "p99", ".3f")]
TABLE3_COLUMNS = [("layout", "layout", "s"), ("io_ms_p50", "I/O ms", ".3f"),
           ("mem_ms_p50", "mem ms", ".4f"), ("compute_ms_p50", "compute ms", ".3f"),
           ("total_ms_p50", "total ms", ".3f"), ("total_ms_p99", "total p99", ".3f")]


def table3_note(row: dict, device: str) -> str:
    """Which of Table 3's parts are measured on this machine and which are modelled."""
    mem = str(row.get("mem_source") or "bytes moved / memcpy bandwidth")
    comp = str(row.get("compute_source") or "fixed rates")
    mem_text = ("runtime memory management calibrated on this machine"
                if mem.startswith("runtime memory management") else f"modelled, {mem}")
    if comp.startswith("opt-decode"):
        comp_text = "the sparse decode calibrated on this machine (per part)"
    elif comp.startswith("matvec"):
        comp_text = "the decode's parts as numpy matvecs at the model's shapes, timed here"
    else:
        comp_text = f"modelled, {comp}"
    if row.get("wait_source"):
        comp_text += (" plus what it pays after waiting on reads, measured by decodes from "
                      "flash (the profile's decode_wait)")
    return (f"I/O: device model (profile {device}); memory: {mem_text}; "
            f"compute: {comp_text}.")


def add_display_units(summary: dict) -> dict:
    """The summary with the MB and KiB columns the tables print (in place, and returned)."""
    summary["mb_per_token"] = summary["bytes_per_token"] / 1e6
    summary["dram_resident_mb"] = summary["dram_resident_bytes"] / 1e6
    summary["mean_read_kib"] = summary["mean_read_bytes"] / 1024
    return summary


def plot_compare(rows: list[dict], path: str, *, title: str = "") -> None:
    """Two panels: bytes read per token, and I/O + memory + compute ms per token (stacked)."""
    figure_format(path, key="--plot")  # fail before drawing
    names = [r["layout"] for r in rows]
    x = np.arange(len(rows))
    fig = new_figure(figsize=(12, 4.5))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.bar(x, [r["mb_per_token"] for r in rows], color="tab:blue")
    ax1.set_yscale("log")
    ax1.set_ylabel("MB read per token (log)")
    bottom = np.zeros(len(rows))
    for key, label, color in (("io_ms_p50", "I/O", "tab:blue"), ("mem_ms_p50", "memory", "tab:orange"),
                              ("compute_ms_p50", "compute", "tab:green")):
        vals = np.array([r[key] for r in rows])
        ax2.bar(x, vals, bottom=bottom, label=label, color=color)
        bottom += vals
    ax2.set_ylabel("ms per token (p50)")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.set_xticks(x, names, rotation=35, ha="right", fontsize=8)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
