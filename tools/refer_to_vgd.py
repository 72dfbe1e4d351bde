"""Convert the `refer` toolkit's RefCOCO / RefCOCO+ / RefCOCOg annotations into the per-split json files the VGD task
reads (spec §6): ``<out>/<dataset>/<split>.json``, one entry per referring sentence in the pickle's order.

    python3 tools/refer_to_vgd.py --dataset refcoco  --refer-dir refer/data/refcoco  --out datasets/vgd
    python3 tools/refer_to_vgd.py --dataset refcoco+ --refer-dir refer/data/refcoco+ --out datasets/vgd
    python3 tools/refer_to_vgd.py --dataset refcocog --refer-dir refer/data/refcocog --out datasets/vgd

Inputs: ``refs(unc).p`` (RefCOCO, RefCOCO+: splits train, val, testA, testB) or ``refs(umd).p`` (RefCOCOg: train,
val, test) and ``instances.json`` (COCO images, annotations and categories) from the refer toolkit's data folder.
Each entry holds the release's keys — tokens (as stored), file_name, image_id, split, bbox ([x, y, w, h] of the
referred annotation), name (its category), height, width — plus ref_id and sent_id, which result files echo. Refs of
other splits are dropped.

The pickle is read with a restricted unpickler that builds only plain containers, strings and numbers: a file that
names any other Python object is refused without running anything."""
from __future__ import annotations

import argparse
import builtins
import json
import pickle
import sys
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmnas.errors import DataError, UserError  # noqa: E402
from mmnas.fileio import atomic_write_json  # noqa: E402

SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
SPLITS = {"unc": ("train", "val", "testA", "testB"), "umd": ("train", "val", "test")}
# The only globals a refs pickle may name: builtin containers (Python 2 pickles call the module __builtin__).
SAFE_GLOBALS = {(module, name) for module in ("builtins", "__builtin__")
                for name in ("list", "dict", "tuple", "set", "frozenset")}
REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences", "file_name", "category_id")


class _ContainersOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"it names the Python object {module}.{name}")


def load_refs(path: str | Path) -> list[dict]:
    """The refs list of refer's ``refs(unc).p`` / ``refs(umd).p``, unpickled with only builtin containers allowed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"refer pickle {path} does not exist. It comes with the refer toolkit's data "
                        f"(https://github.com/lichengunc/refer: data/<dataset>/refs(unc).p or refs(umd).p).")
    try:
        with open(path, "rb") as f:
            refs = _ContainersOnly(f, encoding="utf-8").load()
    except pickle.UnpicklingError as e:
        raise DataError(f"refer pickle {path} was refused: {e}. A refs file holds only lists, dicts, strings and "
                        f"numbers; this one would have run code, so nothing in it was executed. Use the refs file "
                        f"of the refer toolkit.") from None
    except (EOFError, ValueError, UnicodeDecodeError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"refer pickle {path} cannot be read ({type(e).__name__}: {e}); is it a complete "
                        f"refs(unc).p / refs(umd).p?") from None
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise DataError(f"refer pickle {path} must hold a list of ref dicts, found {type(refs).__name__}.")
    for i, r in enumerate(refs):
        missing = [k for k in REF_KEYS if k not in r]
        if missing:
            raise DataError(f"refer pickle {path}, ref {i}: missing key(s) {', '.join(missing)}; is it a refer "
                            f"refs file?")
    return refs


def load_instances(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"COCO instances file {path} does not exist (refer's data/<dataset>/instances.json).")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not valid JSON ({e}).") from None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise DataError(f"{path} has no list under {', '.join(missing)}; it must be refer's COCO instances.json.")
    return data


def convert(refs: list[dict], instances: dict[str, Any], split_by: str,
            source: str = "the refs file") -> dict[str, list[dict]]:
    """{split: [entry, …]} — one entry per sentence, in the pickle's order; refs of other splits are dropped."""
    images = {img["id"]: img for img in instances["images"]}
    anns = {ann["id"]: ann for ann in instances["annotations"]}
    cats = {cat["id"]: cat["name"] for cat in instances["categories"]}
    out: dict[str, list[dict]] = {s: [] for s in SPLITS[split_by]}
    for i, ref in enumerate(refs):
        if ref["split"] not in out:
            continue
        for key, table, what in ((ref["ann_id"], anns, "annotation"), (ref["image_id"], images, "image"),
                                 (ref["category_id"], cats, "category")):
            if key not in table:
                raise DataError(f"ref {i} (ref_id {ref['ref_id']}) of {source} names {what} id {key}, which "
                                f"instances.json does not have; use the instances.json of the same refer dataset.")
        image, box = images[ref["image_id"]], anns[ref["ann_id"]]["bbox"]
        for sent in ref["sentences"]:
            if not isinstance(sent, dict) or not isinstance(sent.get("tokens"), list):
                raise DataError(f"ref {i} (ref_id {ref['ref_id']}) of {source} has a sentence without a 'tokens' "
                                f"list: {sent!r}.")
            out[ref["split"]].append({
                "tokens": list(sent["tokens"]), "file_name": ref["file_name"], "image_id": ref["image_id"],
                "split": ref["split"], "bbox": list(box), "name": cats[ref["category_id"]],
                "height": image["height"], "width": image["width"],
                "ref_id": ref["ref_id"], "sent_id": sent.get("sent_id"),
            })
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(SPLIT_BY), required=True)
    p.add_argument("--refer-dir", type=Path, help="refer's data/<dataset> folder (refs(...).p and instances.json)")
    p.add_argument("--refs", type=Path, help="the refs pickle (default: <refer-dir>/refs(<split-by>).p)")
    p.add_argument("--instances", type=Path, help="COCO instances json (default: <refer-dir>/instances.json)")
    p.add_argument("--split-by", choices=sorted(SPLITS), help="unc (RefCOCO/RefCOCO+) or umd (RefCOCOg)")
    p.add_argument("--out", type=Path, default=Path("datasets/vgd"), help="VGD data root (default: %(default)s)")
    args = p.parse_args(argv)
    split_by = args.split_by or SPLIT_BY[args.dataset]
    try:
        if args.refer_dir is None and (args.refs is None or args.instances is None):
            raise UserError("give --refer-dir, or both --refs and --instances.")
        refs_path = args.refs or args.refer_dir / f"refs({split_by}).p"
        inst_path = args.instances or args.refer_dir / "instances.json"
        splits = convert(load_refs(refs_path), load_instances(inst_path), split_by, str(refs_path))
        for split, entries in splits.items():
            path = args.out / args.dataset / f"{split}.json"
            atomic_write_json(path, entries)
            print(f"{path}: {len(entries)} expressions")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
