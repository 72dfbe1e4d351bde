"""Pack folders of bottom-up `.npz` region features into memory-mapped arrays that the VQA and VGD data read instead
of one `.npz` per sample (mmnas/data/features.py describes the files; the same arrays come out either way).

    python3 tools/pack_features.py datasets/vqa/bua-r101-max100/train2014 datasets/vqa/bua-r101-max100/val2014 \\
        datasets/vqa/bua-r101-max100/test2015                      # → datasets/vqa/bua-r101-max100/packed/
    python3 tools/pack_features.py datasets/vgd/bua-r101-fix100    # → datasets/vgd/packed/

Each folder becomes ``<parent>/packed/<folder>_n<N>.{feat.npy,meta.npz,index.npz}`` (N = --max-regions, the
release's 100): 819,200 bytes per image at F = 2048, N = 100 — about 67 GB for VQA's train2014 (82,783 images) —
plus, with --geometry, 160,000 bytes per image of pair geometry. Re-running is cheap when nothing changed; a
RegionStore warns and reads the `.npz` files when a file changed after packing. The data runs find the packs by
themselves (they must sit in ``<parent>/packed``; --out is for other places, read by passing pack_dir)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmnas.data.features import pack_feature_folder  # noqa: E402
from mmnas.errors import UserError  # noqa: E402


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="folders of <name>_<image id>.npz feature files")
    p.add_argument("--max-regions", type=int, default=100, help="regions kept per image (default: %(default)s)")
    p.add_argument("--geometry", action="store_true", help="also store each image's pair geometry [N,N,4]")
    p.add_argument("--out", type=Path, help="where to write (default: <folder's parent>/packed)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    try:
        for folder in a.folders:
            if not folder.is_dir():
                raise UserError(f"{folder} is not a folder of .npz feature files.")
            start = time.perf_counter()
            index = pack_feature_folder(folder, a.max_regions, a.out, a.geometry, progress=not a.quiet)
            print(f"{folder}: packed into {index.parent}/{index.name[:-len('.index.npz')]}.* "
                  f"({time.perf_counter() - start:.1f} s)")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
