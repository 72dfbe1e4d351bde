"""`python3 -m mmnas.summary`: build a network from an arch file and print its parameter count per part (spec §1)."""
from __future__ import annotations

import argparse
import sys
from collections import Counter

from mmnas.models.build import TASKS, build_network


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m mmnas.summary", description=__doc__)
    p.add_argument("--task", choices=TASKS, default="vqa")
    p.add_argument("--arch", default="arch/mmnas_vqa.json", help="arch json (spec §8)")
    p.add_argument("--epoch", default="0", help="arch epoch key (N or epochN)")
    p.add_argument("--vocab-size", type=int, default=20000)
    p.add_argument("--answer-size", type=int, default=3129)
    p.add_argument("--hidden-size", type=int, default=512)
    args = p.parse_args(argv)
    try:
        net = build_network(args.task, args.arch, epoch=args.epoch, vocab_size=args.vocab_size,
                            answer_size=args.answer_size, hidden_size=args.hidden_size)
    except (ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    parts: Counter = Counter()
    for name, param in net.named_parameters():
        parts[name.split(".")[0]] += param.numel()
    for part, n in parts.items():
        print(f"{part:16s} {n:>12,d}")
    total = sum(parts.values())
    print(f"{'total':16s} {total:>12,d}")
    print(f"parameters: {total}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
