"""Redraw a run's pictures: `python3 -m mmnas.viz LOG_DIR VERSION [--out DIR]` or
`python3 -m mmnas.viz path/to/metrics_<VERSION>.jsonl [--out DIR]`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from mmnas.errors import UserError
from mmnas.viz.plots import draw_run
from mmnas.viz.records import last_run, plots_dir, read_metrics, version_of


def metrics_file(args: Sequence[str]) -> Path:
    """The metrics file named by `METRICS.jsonl` or by `LOG_DIR VERSION` (LOG_DIR being run.log_dir, e.g. logs,
    or its log/ folder)."""
    if len(args) == 1:
        path = Path(args[0])
        if path.is_dir():
            raise UserError(f"{path} is a folder: give the run's VERSION too (python3 -m mmnas.viz {path} VERSION) "
                            f"or the metrics file itself (…/log/metrics_<VERSION>.jsonl).")
    elif len(args) == 2:
        log_dir, version = Path(args[0]), args[1]
        candidates = [log_dir / "log" / f"metrics_{version}.jsonl", log_dir / f"metrics_{version}.jsonl"]
        path = next((p for p in candidates if p.is_file()), candidates[0])
    else:
        raise UserError("give either a metrics file (logs/log/metrics_<VERSION>.jsonl) or a log folder and a "
                        "VERSION (python3 -m mmnas.viz logs <VERSION>).")
    if not path.is_file():
        raise UserError(f"metrics file {path} does not exist. A search or training writes "
                        f"<run.log_dir>/log/metrics_<VERSION>.jsonl; check the folder (default logs) and --VERSION.")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m mmnas.viz", description=__doc__.split("\n")[0])
    p.add_argument("run", nargs="+", metavar="LOG_DIR VERSION | METRICS.jsonl")
    p.add_argument("--out", help="folder for the PNGs (default <LOG_DIR>/plots/<VERSION>/)")
    args = p.parse_args(argv)
    try:
        path = metrics_file(args.run)
        records = read_metrics(path)
        if not (last_run(records, "search") or last_run(records, "train")):
            raise UserError(f"metrics file {path} holds no per-epoch search or training record (only "
                            f"{len(records)} other line(s)): nothing to draw. Val and test runs log one record "
                            f"each; draw the training run's VERSION instead.")
        out = Path(args.out) if args.out else plots_dir(path.parent.parent, version_of(path))
        written = draw_run(path, out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for w in written:
        print(w)
    return 0


if __name__ == "__main__":
    sys.exit(main())
