"""Pictures of a run from its metrics file: the α heatmap and curves of a search (entropy, changed nodes, losses,
derived network), the curves of a training (loss, validation, learning rate); headless PNGs written atomically."""
from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from mmnas.fileio import atomic_write
from mmnas.viz import records as R

# File names under <log_dir>/plots/<VERSION>/.
ALPHA_PNG = "alpha_probs.png"
SEARCH_PNG = "search_curves.png"
TRAIN_PNG = "train_curves.png"

DPI = 90  # small files, quick to render: the engine redraws after every epoch


def _figure(width: float, height: float):
    """A Figure on the Agg canvas: no pyplot, no global backend switch, nothing that needs a display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    atomic_write(path, lambda f: f.write(buf.getvalue()), binary=True)
    return path


def _integer_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.grid(True, alpha=0.3)


def _line(ax, xs: Sequence[int], ys: Sequence[float | None], **kw) -> bool:
    """Plot the defined points of a series (markers, so a one-epoch run still shows); False if none is."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if not pts:
        return False
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", markersize=3, **kw)
    return True


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} logged", ha="center", va="center", transform=ax.transAxes, color="grey")


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best")


def primary_metric(metrics_path: str | os.PathLike, task: str | None = None) -> str | None:
    """The task's headline metric (Task.metric), the task read from the run's config_<VERSION>.yaml if not given."""
    if task is None:
        cfg = Path(metrics_path).with_name(f"config_{R.version_of(metrics_path)}.yaml")
        try:
            m = re.search(r"^task:\s*(\w+)", cfg.read_text(encoding="utf-8"), re.MULTILINE)
        except OSError:
            m = None
        task = m.group(1) if m else None
    if not task:
        return None
    try:
        from mmnas.tasks import get_task
        return get_task(task).metric or None
    except Exception:  # an unknown task name in an old config: fall back to every scored key
        return None


def _metric_series(recs: Sequence[Mapping[str, Any]], prefix: str, primary: str | None):
    """(label, values) per scored metric `<prefix><name>`, plus the numeric entries of dict-valued ones
    (VQA's perAnswerType) dashed."""
    out = [(name, [R.number(r.get(prefix + name)) for r in recs], "-") for name in R.metric_keys(recs, prefix, primary)]
    sub: dict[str, dict[str, None]] = {}
    for r in recs:
        for k, v in r.items():
            if k.startswith(prefix) and isinstance(v, Mapping):
                sub.setdefault(k[len(prefix):], {}).update({s: None for s, x in v.items() if R.number(x) is not None})
    for key, names in sub.items():
        for s in names:
            vals = [R.number(r.get(prefix + key, {}).get(s)) if isinstance(r.get(prefix + key), Mapping) else None
                    for r in recs]
            out.append((f"{key}: {s}", vals, "--"))
    return out


# -- search ---------------------------------------------------------------------------------------------------------
def draw_alpha_heatmap(rec: Mapping[str, Any], path: Path, title: str = "") -> Path | None:
    """softmax(α) of every node (rows) over its candidate ops (columns), encoder and decoder side by side; the
    argmax of each node is outlined."""
    cells = [(c, R.cell_probs(rec.get("probs"), c)) for c in R.CELLS]
    cells = [(c, nodes) for c, nodes in cells if nodes]
    if not cells:
        return None
    import numpy as np
    from matplotlib.patches import Rectangle
    ops_of = {}
    for c, nodes in cells:
        names: dict[str, None] = {}
        for ns, _ in nodes:
            names.update({n: None for n in ns})
        ops_of[c] = list(names)
    max_nodes = max(len(nodes) for _, nodes in cells)
    w, h = 2.4 + 1.15 * sum(len(ops_of[c]) for c, _ in cells), 1.8 + 0.36 * max_nodes
    fig = _figure(w, h)
    # Fixed margins in inches (room for the rotated op names and the colour bar), not tight_layout: it costs more
    # than the drawing.
    left, right, bottom, top = 0.7 / w, 1 - 1.3 / w, 0.85 / h, 1 - 0.6 / h
    gap = 0.8 / ((right - left) * w / len(cells))  # 0.8 inch between panels, for the 'node' label
    grid = fig.add_gridspec(1, len(cells), width_ratios=[len(ops_of[c]) for c, _ in cells], left=left,
                            right=right, bottom=bottom, top=top, wspace=gap)
    image = None
    for j, (cell, nodes) in enumerate(cells):
        ops = ops_of[cell]
        mat = np.full((len(nodes), len(ops)), np.nan)
        for i, (ns, ps) in enumerate(nodes):
            for n, p in zip(ns, ps):
                mat[i, ops.index(n)] = p
        ax = fig.add_subplot(grid[0, j])
        image = ax.imshow(np.ma.masked_invalid(mat), vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(ops)), ops, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(len(nodes)), [str(i) for i in range(len(nodes))], fontsize=8)
        ax.set_ylabel("node")
        ax.set_title({"enc": "encoder", "dec": "decoder"}.get(cell, cell), fontsize=10)
        for i, (ns, ps) in enumerate(nodes):
            best = max(range(len(ps)), key=lambda k: (ps[k], -k))
            ax.add_patch(Rectangle((ops.index(ns[best]) - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", lw=2))
            if max_nodes <= 30:
                for n, p in zip(ns, ps):
                    ax.text(ops.index(n), i, f"{p:.2f}", ha="center", va="center", fontsize=7,
                            color="black" if p > 0.6 else "white")
    fig.colorbar(image, cax=fig.add_axes((right + 0.25 / w, bottom, 0.15 / w, top - bottom)), label="probability")
    epoch = rec.get("epoch")
    fig.suptitle(f"{title}softmax(α) after epoch {epoch} (red: argmax = derived op)", fontsize=10)
    return _save(fig, path)


def draw_search_curves(recs: Sequence[Mapping[str, Any]], path: Path, primary: str | None = None,
                       title: str = "") -> Path:
    """α entropy per cell, nodes whose argmax changed, weight/arch loss and the derived network's metric."""
    xs = [r["epoch"] for r in recs]
    fig = _figure(10.0, 6.6)
    axes = fig.subplots(2, 2)
    ax = axes[0, 0]
    drawn = False
    for cell, colour in zip(R.CELLS, ("tab:blue", "tab:orange")):
        ent = R.cell_entropies(recs, cell)
        if _line(ax, xs, ent, color=colour, label={"enc": "encoder", "dec": "decoder"}[cell]):
            drawn = True
            nodes = next((R.cell_probs(r.get("probs"), cell) for r in recs if R.cell_probs(r.get("probs"), cell)), None)
            k = len(nodes[0][0]) if nodes else 0
            if k > 1:
                ax.axhline(math.log(k), color=colour, ls=":", lw=1, label=f"uniform over {k} (ln {k})")
    if not drawn:
        _empty(ax, "α probabilities")
    ax.set_title("α entropy, mean over nodes (nats)", fontsize=10)
    ax.set_ylim(0, max(ax.get_ylim()[1], 0.1) * 1.35)  # headroom for the legend above the 'uniform' lines
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper center", ncol=2)
    _integer_epochs(ax)

    ax = axes[0, 1]
    changes = R.genotype_changes(recs)
    pts = [(x, c) for x, c in zip(xs, changes) if c is not None]
    if pts:
        ax.bar([p[0] for p in pts], [p[1] for p in pts], color="tab:purple", width=0.6)
        for x, c in pts:  # a zero bar is invisible: the count is written above every epoch
            ax.text(x, c, str(c), ha="center", va="bottom", fontsize=8)
        ax.set_ylim(0, max(1, max(p[1] for p in pts)) * 1.25 + 0.25)
    else:
        _empty(ax, "genotype")
    ax.set_title("nodes whose argmax op changed", fontsize=10)
    _integer_epochs(ax)

    ax = axes[1, 0]
    a = _line(ax, xs, [R.number(r.get("loss")) for r in recs], color="tab:blue", label="weight loss (80 % part)")
    b = _line(ax, xs, [R.number(r.get("arch_loss")) for r in recs], color="tab:red", label="arch loss (20 % part)")
    if not (a or b):
        _empty(ax, "loss")
    ax.set_title("training loss (per sample)", fontsize=10)
    _legend(ax)
    _integer_epochs(ax)

    ax = axes[1, 1]
    drawn = False
    for label, vals, ls in _metric_series(recs, "derived_", primary):
        drawn |= _line(ax, xs, vals, ls=ls, label=label)
    if not drawn:
        _empty(ax, "derived-network metric")
    ax.set_title("derived network (argmax of α) on the α part", fontsize=10)
    _legend(ax)
    _integer_epochs(ax)
    fig.suptitle(f"{title}search", fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.08, top=0.9, wspace=0.22, hspace=0.38)
    return _save(fig, path)


# -- training -------------------------------------------------------------------------------------------------------
def draw_train_curves(recs: Sequence[Mapping[str, Any]], path: Path, primary: str | None = None,
                      title: str = "") -> Path:
    """Training loss, validation metric(s) and learning rate per epoch."""
    xs = [r["epoch"] for r in recs]
    fig = _figure(12.0, 3.6)
    axes = fig.subplots(1, 3)
    ax = axes[0]
    if not _line(ax, xs, [R.number(r.get("loss")) for r in recs], color="tab:blue"):
        _empty(ax, "loss")
    ax.set_title("training loss (per sample)", fontsize=10)
    _integer_epochs(ax)
    ax = axes[1]
    drawn = False
    for label, vals, ls in _metric_series(recs, "val_", primary):
        drawn |= _line(ax, xs, vals, ls=ls, label=label)
    if not drawn:
        _empty(ax, "validation")
    ax.set_title("validation (after each epoch)", fontsize=10)
    _legend(ax)
    _integer_epochs(ax)
    ax = axes[2]
    lrs = [R.number(r.get("lr")) for r in recs]
    if _line(ax, xs, lrs, color="tab:green"):
        if all(v is None or v > 0 for v in lrs):
            ax.set_yscale("log")
    else:
        _empty(ax, "learning rate")
    ax.set_title("learning rate (end of epoch)", fontsize=10)
    _integer_epochs(ax)
    fig.suptitle(f"{title}training", fontsize=11)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.15, top=0.83, wspace=0.25)
    return _save(fig, path)


# -- a run ----------------------------------------------------------------------------------------------------------
def draw_run(metrics_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
             task: str | None = None) -> list[Path]:
    """Draw every picture the latest run in `metrics_path` supports; returns the PNGs written.

    `out_dir` defaults to <log_dir>/plots/<VERSION>/ beside the run's logs/log/. Unreadable lines and records
    without the fields a picture needs are skipped, so a file with nothing to draw yields []."""
    metrics_path = Path(metrics_path)
    version = R.version_of(metrics_path)
    out = Path(out_dir) if out_dir is not None else R.plots_dir(metrics_path.parent.parent, version)
    records = R.read_metrics(metrics_path)
    search, train = R.last_run(records, "search"), R.last_run(records, "train")
    if not (search or train):
        return []
    primary = primary_metric(metrics_path, task)
    title = f"{version}: "
    written: list[Path] = []
    if search:
        last = next((r for r in reversed(search) if R.cell_probs(r.get("probs"), "enc")
                     or R.cell_probs(r.get("probs"), "dec")), None)
        if last is not None:
            p = draw_alpha_heatmap(last, out / ALPHA_PNG, title)
            if p is not None:
                written.append(p)
        written.append(draw_search_curves(search, out / SEARCH_PNG, primary, title))
    if train:
        written.append(draw_train_curves(train, out / TRAIN_PNG, primary, title))
    return written


def try_draw_run(metrics_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                 warn: Callable[[str], Any] | None = print) -> list[Path]:
    """`draw_run` for the engine's epoch loop: a failed picture is one warning line, never a failed run."""
    try:
        return draw_run(metrics_path, out_dir)
    except Exception as e:  # plotting is a side show: no error of it may stop a search or a training
        if warn is not None:
            warn(f"plots of {metrics_path} skipped: {type(e).__name__}: {e}")
        return []
