"""The stability report command: `python3 -m mmnas.stability ARCH1.json ARCH2.json … [--epoch N|last]
[--out consensus.json] [--report report.json] [--metrics metrics_1.jsonl …]` (computation in mmnas/nas/stability.py)."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from mmnas.errors import UserError
from mmnas.fileio import atomic_write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python3 -m mmnas.stability",
        description="Compare the genotypes of several searches (e.g. one per seed): per-node agreement with the "
                    "majority op, pairwise Hamming distances, and the majority-vote consensus genotype (ties go to "
                    "the earliest arch file given).")
    p.add_argument("arch", nargs="+", help="arch json files written by searches (arch/<VERSION>.json)")
    p.add_argument("--epoch", default="last",
                   help="which key to compare: N (epoch<N>) or 'last' (each file's largest epoch; default)")
    p.add_argument("--out", help="write the consensus genotype here as an arch json, key epoch0 "
                                 "(train it with --ARCH_PATH FILE --ARCH_EPOCH 0)")
    p.add_argument("--report", help="write the whole report as JSON here")
    p.add_argument("--metrics", nargs="+", default=[],
                   help="the searches' metrics_<VERSION>.jsonl files: also average their α probabilities")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mmnas.nas import stability as st
    from mmnas.nas.genotype import Genotype
    try:
        runs = st.load_runs(args.arch, args.epoch)
        rep = st.stability_report(runs)
        probs = st.mean_probs(args.metrics, args.epoch) if args.metrics else None
        if probs is not None:
            rep["alpha"] = probs
        print(st.format_report(runs, rep, probs))
        if args.out:
            st.write_consensus(args.out, Genotype.from_dict(rep["consensus"]))
            print(f"consensus written to {args.out} (key epoch0)")
        if args.report:
            atomic_write_json(args.report, rep, indent=1)
            print(f"report written to {args.report}")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
