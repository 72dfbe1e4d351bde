"""Convert a checkpoint of the original release (MILVLG/mmnas, a `.pkl` holding a DistributedDataParallel
`state_dict`) into an mmnas checkpoint usable with `--RUN val/test --CKPT_PATH` (spec §8).

    python3 tools/convert_release_ckpt.py --task vqa --arch arch/mmnas_vqa.json --data-root datasets/vqa \
        ckpt_mmnas_vqa.pkl logs/ckpts/release_vqa_epoch13.pkl

The input is read with `torch.load(weights_only=True)`: a file that holds anything but tensors and plain
containers (e.g. a pickle that would run code) is refused without being executed."""
from __future__ import annotations

import argparse
import dataclasses
import pickle
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmnas.config import build_config  # noqa: E402
from mmnas.engine.checkpoint import save_checkpoint  # noqa: E402
from mmnas.errors import UserError  # noqa: E402
from mmnas.models.build import TASKS, build_network, resolve_genotype  # noqa: E402
from mmnas.models.release import convert_release_state_dict  # noqa: E402
from mmnas.tasks import get_task  # noqa: E402


def read_release(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"release checkpoint {path} does not exist.")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{path} was refused: it holds more than tensors and plain containers ({first}). It was not "
                        f"unpickled, so nothing in it ran. Only convert checkpoints from a source you trust, "
                        f"as the plain state dicts the release saved.") from None
    state = raw.get("state_dict", raw) if isinstance(raw, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise UserError(f"{path} has no 'state_dict' of tensors; is it a release checkpoint?")
    return state


def hidden_size_of(state: dict) -> int:
    for key, value in state.items():
        if key.endswith("lstm.weight_hh_l0"):
            return int(value.shape[1])
    raise UserError("the release state dict has no lstm.weight_hh_l0; cannot tell its hidden size.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", choices=TASKS, required=True)
    p.add_argument("--arch", required=True, help="the arch json the checkpoint was trained with")
    p.add_argument("--arch-epoch", default=0, type=int)
    p.add_argument("--data-root", required=True, help="the data tree whose vocabularies the checkpoint uses")
    p.add_argument("--dataset", default=None, help="as --DATASET (default: the task's real data)")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    args = p.parse_args(argv)
    try:
        state = read_release(args.input)
        cfg = build_config(args.task, "train", dataset=args.dataset,
                           overrides=[f"data.root={args.data_root}", f"model.hidden_size={hidden_size_of(state)}",
                                      f"run.arch_path={args.arch}", f"run.arch_epoch={args.arch_epoch}"])
        task = get_task(args.task)(cfg)
        task.prepare(need_vectors=False)
        genotype = resolve_genotype(args.arch, args.arch_epoch)
        net = build_network(args.task, genotype, **task.model_kwargs(), **dataclasses.asdict(cfg.model))
        model = convert_release_state_dict(net, state)
        save_checkpoint(args.output, {"task": args.task, "stage": "train", "epoch": 0, "step": 0, "model": model,
                                      "genotype": genotype.to_dict(), "config": cfg.to_dict(), "meta": task.meta(),
                                      "converted_from": str(args.input)})
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output} ({sum(v.numel() for v in model.values()):,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
