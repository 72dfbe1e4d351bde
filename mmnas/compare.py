"""Train several architectures with the same budget and seeds and tabulate their validation scores:
`python3 -m mmnas.compare --task vqa --DATASET easyvqa --arch searched=arch/s1.json:last --arch mcan=arch/mcan.json
--arch random --seeds 1 2 [--epochs N] [--name cmp] [--out DIR] [train flags and section.key=value overrides]`.

Each (architecture, seed) is one ordinary training through the project's own command line (`mmnas.cli.main(task,
'train', …)` in a child process, so one crash cannot take the others down), with per-epoch validation, under
--VERSION <name>_<arch>_s<seed>. Arguments this command does not know (--BS 32, optim.max_epoch=2, …) go to every
training unchanged. `random` is one genotype drawn uniformly per node from the search space (Python's
random.Random(--random-seed), encoder nodes then decoder nodes) with the node counts of the first non-random
architecture (or of the task's search config when there is none); it is written to <out>/random.json, key epoch0,
and trained with every seed. Results: a table on stdout, <out>/compare.md and <out>/compare.json."""
from __future__ import annotations

import argparse
import math
import os
import random
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from mmnas.errors import UserError
from mmnas.fileio import atomic_write_json, atomic_write_text
from mmnas.viz.records import last_run, number, read_metrics

RANDOM = "random"
_ARCH_EPOCH = re.compile(r"^(?:epoch)?(\d+)$|^last$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Train flags a comparison sets itself for every run.
RESERVED = ("--RUN", "--VERSION", "--SEED", "--ARCH_PATH", "--ARCH_EPOCH", "--GENO_EPOCH", "--CKPT_PATH", "--RESUME")
# The child process: exactly what train_<task>.py does, for any task.
_RUNNER = "import sys; from mmnas.cli import main; sys.exit(main(sys.argv[1], 'train', sys.argv[2:]))"


@dataclass
class ArchSpec:
    """One architecture to train: a name for the table and an arch json with its key (None for `random`)."""

    name: str
    path: str | None = None
    epoch: str = "0"  # a number, or 'last' until resolved

    @property
    def is_random(self) -> bool:
        return self.path is None


@dataclass
class RunResult:
    arch: str
    seed: int
    version: str
    status: str = "ok"                     # ok | failed (rc) | skipped (done before, --skip-done)
    final: float | None = None             # the metric after the last epoch
    best: float | None = None              # the best epoch's metric
    best_epoch: int | None = None
    epochs: int = 0
    params: int | None = None
    train_seconds: float | None = None     # Σ epoch_seconds (training steps only)
    wall_seconds: float | None = None      # the whole child process: start-up, data, training, validation
    curve: list[float | None] = field(default_factory=list)


def parse_arch(spec: str) -> ArchSpec:
    """'NAME=PATH[:EPOCH]', 'PATH[:EPOCH]' (named after the file) or '[NAME=]random'; EPOCH is N, epochN or last."""
    name, _, rest = spec.partition("=") if "=" in spec else ("", "", spec)
    if rest == RANDOM:
        return ArchSpec(name or RANDOM)
    path, epoch = rest, "0"
    head, sep, tail = rest.rpartition(":")
    if sep and _ARCH_EPOCH.match(tail):
        path, epoch = head, tail.replace("epoch", "")
    name = name or Path(path).stem
    if not path:
        raise UserError(f"--arch {spec!r} names no arch file; write NAME=arch/file.json[:EPOCH] or 'random'.")
    if not _NAME.match(name):
        raise UserError(f"--arch {spec!r}: the name {name!r} becomes part of --VERSION; use letters, digits, '_', "
                        f"'-' or '.' (e.g. searched=arch/s1.json:last).")
    return ArchSpec(name, path, epoch)


def random_genotype(nodes: Mapping[str, int], seed: int, space: Mapping[str, Sequence[str]] | None = None):
    """A Genotype with one op per node drawn uniformly from `space` (default the search space), encoder nodes
    first, by random.Random(seed)."""
    from mmnas.nas.genotype import CELLS, Genotype
    if space is None:
        from mmnas.ops import SEARCH_SPACE as space
    rng = random.Random(seed)
    return Genotype(**{cell: tuple((rng.choice(list(space[cell])),) for _ in range(nodes[cell])) for cell in CELLS})


def resolve_archs(specs: Sequence[ArchSpec], out: Path, random_seed: int, default_nodes: Mapping[str, int]
                  ) -> list[ArchSpec]:
    """Check every arch file and key now (a typo fails in a second, not after an hour of training), turn 'last'
    into its number and write the random genotype."""
    from mmnas.models.build import resolve_genotype
    from mmnas.nas.genotype import append_genotype, read_arch_file
    from mmnas.nas.stability import last_key
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"--arch names must differ (they name the runs); {', '.join(dup)} is given twice. Name them "
                        f"explicitly, e.g. --arch a=arch/x.json --arch b=arch/y.json.")
    nodes = None
    resolved = []
    for s in specs:
        if s.is_random:
            resolved.append(s)
            continue
        epoch = s.epoch
        if epoch == "last":
            epoch = last_key(read_arch_file(s.path))[len("epoch"):]
        geno = resolve_genotype(s.path, int(epoch))
        nodes = nodes or {"enc": len(geno.enc), "dec": len(geno.dec)}
        resolved.append(ArchSpec(s.name, s.path, epoch))
    out_specs = []
    for s in resolved:
        if s.is_random:
            path = out / f"{s.name}.json"
            if path.exists():
                path.unlink()  # a fresh file: an earlier comparison's genotype must not linger under another key
            append_genotype(path, 0, random_genotype(nodes or default_nodes, random_seed))
            s = ArchSpec(s.name, os.fspath(path), "0")
        out_specs.append(s)
    return out_specs


def parameters_of(log_path: Path, ckpt_path: Path) -> int | None:
    """The parameter count the trainer logged ('… 1,234 parameters'), else counted from the final checkpoint."""
    try:
        found = re.findall(r"([\d,]+) parameters", log_path.read_text(encoding="utf-8"))
        if found:
            return int(found[-1].replace(",", ""))
    except OSError:
        pass
    if ckpt_path.is_file():
        from mmnas.engine.checkpoint import load_checkpoint
        return int(sum(v.numel() for v in load_checkpoint(ckpt_path)["model"].values()))
    return None


def read_result(result: RunResult, metrics_path: Path, metric: str) -> RunResult:
    """Fill `result` from the latest training run in a metrics file: the curve of val_<metric>, final, best."""
    recs = last_run(read_metrics(metrics_path), "train")
    result.epochs = len(recs)
    result.curve = [number(r.get(f"val_{metric}")) for r in recs]
    scored = [(v, r["epoch"]) for v, r in zip(result.curve, recs) if v is not None]
    if scored:
        result.final = result.curve[-1]
        result.best, result.best_epoch = max(scored, key=lambda t: (t[0], -t[1]))
    secs = [number(r.get("epoch_seconds")) for r in recs]
    result.train_seconds = round(sum(s for s in secs if s is not None), 2) if recs else None
    return result


def mean_std(xs: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (n − 1; 0 for one value) of the defined values, and their count."""
    v = [x for x in xs if x is not None]
    if not v:
        return None, None, 0
    m = sum(v) / len(v)
    sd = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, sd, len(v)


def summarize(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Per architecture (in first-seen order): runs, mean ± std of final and best metric, parameters, seconds."""
    out = []
    for arch in dict.fromkeys(r.arch for r in results):
        rs = [r for r in results if r.arch == arch]
        fm, fs, n = mean_std([r.final for r in rs])
        bm, bs, _ = mean_std([r.best for r in rs])
        wall, _, _ = mean_std([r.wall_seconds for r in rs])
        train, _, _ = mean_std([r.train_seconds for r in rs])
        params = next((r.params for r in rs if r.params is not None), None)
        out.append({"arch": arch, "runs": len(rs), "scored": n, "final_mean": fm, "final_std": fs, "best_mean": bm,
                    "best_std": bs, "params": params, "train_seconds_mean": train, "wall_seconds_mean": wall})
    return out


def _f(x: float | None, digits: int = 2) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _pm(m: float | None, s: float | None) -> str:
    return "—" if m is None else f"{m:.2f} ± {s:.2f}"


def _int(x: int | None) -> str:
    return "—" if x is None else f"{x:,}"


def markdown(results: Sequence[RunResult], summary: Sequence[Mapping[str, Any]], metric: str, header: str) -> str:
    lines = [header, "", (f"| arch | seed | status | final val {metric} | best val {metric} (epoch) | epochs | "
                          f"params | train s | wall s |"), "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        best = "—" if r.best is None else f"{r.best:.2f} ({r.best_epoch})"
        lines.append(f"| {r.arch} | {r.seed} | {r.status} | {_f(r.final)} | {best} | {r.epochs} | {_int(r.params)} | "
                     f"{_f(r.train_seconds, 1)} | {_f(r.wall_seconds, 1)} |")
    lines += ["", (f"| arch | runs | final val {metric} mean ± std | best val {metric} mean ± std | params | "
                   f"train s (mean) | wall s (mean) |"), "|---|---:|---:|---:|---:|---:|---:|"]
    for s in summary:
        lines.append(f"| {s['arch']} | {s['scored']}/{s['runs']} | {_pm(s['final_mean'], s['final_std'])} | "
                     f"{_pm(s['best_mean'], s['best_std'])} | {_int(s['params'])} | "
                     f"{_f(s['train_seconds_mean'], 1)} | {_f(s['wall_seconds_mean'], 1)} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: an abbreviated train flag must pass through, never match one of ours.
    p = argparse.ArgumentParser(prog="python3 -m mmnas.compare", description=__doc__.split("\n\n")[0],
                                allow_abbrev=False,
                                epilog="Any other argument (a train flag such as --BS 32, or section.key=value) is "
                                       "passed to every training.")
    p.add_argument("--task", required=True, help="vqa, vgd or itm")
    p.add_argument("--DATASET", dest="dataset", help="as for train_<task>.py (a demo uses configs/demo/<task>_train.yaml)")
    p.add_argument("--arch", action="append", required=True, metavar="NAME=PATH[:EPOCH] | random",
                   help="an architecture to train (repeat); EPOCH: N, epochN or last (default 0)")
    p.add_argument("--seeds", nargs="+", type=int, default=[1], help="training seeds, each arch once per seed")
    p.add_argument("--epochs", type=int, help="the budget: optim.max_epoch of every training (default: config's)")
    p.add_argument("--name", default="cmp", help="run prefix: --VERSION <name>_<arch>_s<seed> (default cmp)")
    p.add_argument("--out", help="where the tables, the random genotype and the runs' console output go "
                                 "(default <run.log_dir>/compare/<name>)")
    p.add_argument("--metric", help="validation metric to tabulate (default: the task's, e.g. accuracy)")
    p.add_argument("--random-seed", type=int, default=0, help="seed of the random genotype (default 0)")
    p.add_argument("--skip-done", action="store_true",
                   help="reuse a run whose metrics already hold its last epoch instead of training it again")
    p.add_argument("--dry-run", action="store_true", help="print the training commands, run nothing")
    return p


def run_argv(task: str, dataset: str | None, arch: ArchSpec, seed: int, version: str, epochs: int | None,
             passthrough: Sequence[str]) -> list[str]:
    argv = ["--RUN", "train", "--VERSION", version, "--SEED", str(seed), "--ARCH_PATH", arch.path,
            "--ARCH_EPOCH", str(arch.epoch), "--NO_PROGRESS"]
    if dataset:
        argv += ["--DATASET", dataset]
    argv += list(passthrough) + ["run.eval_every_epoch=true", "run.overwrite=true"]
    if epochs is not None:
        argv.append(f"optim.max_epoch={epochs}")
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    args, passthrough = build_parser().parse_known_args(argv)
    try:
        return compare(args, passthrough)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def compare(args: argparse.Namespace, passthrough: Sequence[str]) -> int:
    from mmnas.cli import parse
    from mmnas.config import ConfigError
    from mmnas.tasks import get_task
    try:
        task_cls = get_task(args.task)
    except KeyError:
        raise UserError(f"--task {args.task!r} is not a task of this project; use vqa, vgd or itm.") from None
    metric = args.metric or task_cls.metric
    taken = sorted({a.split("=")[0] for a in passthrough} & set(RESERVED))
    if taken:
        raise UserError(f"{', '.join(taken)} cannot be passed to the trainings of a comparison: it sets them per run "
                        f"(--VERSION <name>_<arch>_s<seed>, --SEED from --seeds, the arch from --arch, --RUN train). "
                        f"Drop {'it' if len(taken) == 1 else 'them'}.")
    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs {args.epochs}: the budget must be at least one epoch.")
    base = ["--DATASET", args.dataset] if args.dataset else []
    try:
        probe = parse(args.task, "train", base + list(passthrough))
        search_cfg = parse(args.task, "search", base)
    except ConfigError as e:
        raise UserError(f"the arguments passed to the trainings do not parse: {e}") from None
    except SystemExit:
        raise UserError(f"train_{args.task}.py rejects the extra arguments {list(passthrough)} (see its --help).") \
            from None
    out = Path(args.out) if args.out else Path(probe.run.log_dir) / "compare" / args.name
    out.mkdir(parents=True, exist_ok=True)
    archs = resolve_archs([parse_arch(a) for a in args.arch], out, args.random_seed,
                          {"enc": search_cfg.search.nodes_enc, "dec": search_cfg.search.nodes_dec})
    plan = []
    for arch in archs:
        for seed in args.seeds:
            version = f"{args.name}_{arch.name}_s{seed}"
            argv = run_argv(args.task, args.dataset, arch, seed, version, args.epochs, passthrough)
            try:
                cfg = parse(args.task, "train", argv)
            except (ConfigError, SystemExit) as e:
                raise UserError(f"the training command of {version} does not parse ({e}).") from None
            plan.append((arch, seed, version, argv, cfg))
    budget = plan[0][4].optim.max_epoch
    if args.dry_run:
        for _, _, _, argv, _ in plan:
            print(" ".join([f"train_{args.task}.py", *argv]))
        return 0
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.fspath(repo)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.setdefault("OMP_NUM_THREADS", "1")  # as scripts/demo.sh: small nets, shared CPUs
    results: list[RunResult] = []
    for i, (arch, seed, version, argv, cfg) in enumerate(plan):
        log_dir = Path(cfg.run.log_dir)
        metrics_path = log_dir / "log" / f"metrics_{version}.jsonl"
        res = RunResult(arch.name, seed, version)
        done = last_run(read_metrics(metrics_path), "train")
        if args.skip_done and done and done[-1]["epoch"] == cfg.optim.max_epoch:
            res.status = "skipped (done before)"
        else:
            print(f"[{i + 1}/{len(plan)}] {version}: train_{args.task}.py {' '.join(argv)}", flush=True)
            t0 = time.time()
            with open(out / f"{version}.out", "w", encoding="utf-8") as console:
                rc = subprocess.run([sys.executable, "-c", _RUNNER, args.task, *argv], stdout=console,
                                    stderr=subprocess.STDOUT, env=env, check=False).returncode
            res.wall_seconds = round(time.time() - t0, 1)
            if rc != 0:
                res.status = f"failed (exit {rc}, see {out / (version + '.out')})"
        read_result(res, metrics_path, metric)
        if res.status != "ok" and not res.status.startswith("skipped"):
            res.final = res.best = None  # a half-finished run is not scored
        res.params = parameters_of(log_dir / "log" / f"log_{version}.txt",
                                   log_dir / "ckpts" / f"{version}_epoch{max(res.epochs, 1)}.pkl")
        print(f"    {res.status}: final {_f(res.final)}, best {_f(res.best)}, {res.wall_seconds} s", flush=True)
        results.append(res)
    summary = summarize(results)
    header = (f"# Comparison `{args.name}`: task {args.task}, dataset {probe.data.dataset}, {budget} epoch(s) each, "
              f"seeds {args.seeds}, metric val {metric}\n\narchitectures: " +
              ", ".join(f"{a.name} = {a.path} epoch{a.epoch}" for a in archs))
    md = markdown(results, summary, metric, header)
    print(md)
    atomic_write_text(out / "compare.md", md)
    atomic_write_json(out / "compare.json", {
        "task": args.task, "dataset": probe.data.dataset, "metric": metric, "epochs": budget, "seeds": args.seeds,
        "archs": [asdict(a) for a in archs], "passthrough": list(passthrough), "runs": [asdict(r) for r in results],
        "summary": summary}, indent=1)
    print(f"wrote {out / 'compare.md'} and {out / 'compare.json'}")
    return 0 if all(r.status == "ok" or r.status.startswith("skipped") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
