"""Search MMNas for VQA with the release's flags: python3 search_vqa.py --help."""
import sys

from mmnas.cli import main

if __name__ == "__main__":
    sys.exit(main("vqa", "search"))
