"""`python -m benchmarks`: every benchmark, tables to benchmarks/results/ (see benchmarks/run_all.py)."""
import sys

from benchmarks.run_all import main

sys.exit(main())
