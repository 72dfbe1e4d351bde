"""Train MMNas for VQA with the release's flags: python3 train_vqa.py --help."""
import sys

from mmnas.cli import main

if __name__ == "__main__":
    sys.exit(main("vqa", "train"))
