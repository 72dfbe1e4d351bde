"""Train MMNas for ITM with the release's flags: python3 train_itm.py --help."""
import sys

from mmnas.cli import main

if __name__ == "__main__":
    sys.exit(main("itm", "train"))
