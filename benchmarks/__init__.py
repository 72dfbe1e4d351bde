"""Speed and memory benchmarks of mmnas at the release's sizes (issue 7): network steps, data loading, ITM scoring.

`python -m benchmarks [--quick] [--threads N] [--out DIR]` runs them all (benchmarks/run_all.py)."""
