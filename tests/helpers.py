"""Small shared builders for the tests (not project code)."""
from __future__ import annotations

from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE_KEYS = Path(__file__).resolve().parent / "data" / "reference_keys"


def reference_state_dict(task: str, tokens: int, answers: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the names and shapes of reference_keys/<task>.txt."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for line in (REFERENCE_KEYS / f"{task}.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split()
        dims = [int(d.replace("TOKENS", str(tokens)).replace("ANSWERS", str(answers))) for d in shape.split("x")]
        out[key] = torch.randn(*dims, generator=g)
    return out


def random_batch(b: int = 2, t: int = 5, n: int = 6, feat: int = 16, vocab: int = 30, pad_text: int = 1,
                 pad_regions: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(1, vocab, (b, t), generator=g)
    if pad_text:
        text[:, t - pad_text:] = 0
    img = torch.randn(b, n, feat, generator=g)
    if pad_regions:
        img[:, n - pad_regions:] = 0
    rel = torch.randn(b, n, n, 4, generator=g)
    return {"text_ix": text, "img_feat": img, "img_rel": rel, "img_box_feat": torch.rand(b, n, 5, generator=g)}


def padded_vqa_batch(b: int = 3, n: int = 12, t: int = 6, feat: int = 32, answers: int = 10,
                     seed: int = 0) -> dict[str, torch.Tensor]:
    """A VQA batch with one padded question (index 0 from token 4) and one padded image (zero rows from region 9),
    as the loaders give them, and soft targets."""
    g = torch.Generator().manual_seed(seed)
    text = torch.randint(3, 50, (b, t), generator=g)
    text[0, 4:] = 0
    img = torch.rand(b, n, feat, generator=g)
    img[1, 9:] = 0
    return {"text_ix": text, "img_feat": img, "img_rel": torch.randn(b, n, n, 4, generator=g),
            "target": torch.rand(b, answers, generator=g)}


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 2e-5, what: str = "") -> None:
    """fp32 agreement, relative to the larger magnitude of the two tensors (on any devices)."""
    a, b = a.detach().cpu(), b.detach().cpu()
    scale = max(float(a.abs().max()), float(b.abs().max()), 1e-12)
    err = float((a - b).abs().max()) / scale
    assert err <= tol, f"{what + ': ' if what else ''}relative difference {err:.2e} > {tol:.0e}"


SMALL_GENOTYPE = {"enc": [["self_att_64"], ["feed_forward"]],
                  "dec": [["rel_self_att_64"], ["guided_att_64"], ["feed_forward"]]}


def vgd_args(root: Path, tmp: Path, *extra: str) -> list[str]:
    """Flags for a tiny, fast run on a test tree; outputs go under tmp."""
    return ["--DATASET", "shapes", "--NO_PROGRESS", "--NW", "0", "--BS", "16", f"data.root={root}",
            f"run.log_dir={tmp / 'logs'}", f"run.arch_dir={tmp / 'arch'}", "model.hidden_size=64",
            "model.flat_mlp_size=32", "run.plots=false", *extra]
