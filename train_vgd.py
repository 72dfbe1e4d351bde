"""Train MMNas for visual grounding with the release's flags: python3 train_vgd.py --help."""
import sys

from mmnas.cli import main

if __name__ == "__main__":
    sys.exit(main("vgd", "train"))
