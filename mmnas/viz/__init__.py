"""Pictures of searches and trainings drawn from their metrics files (`draw_run`), and the α statistics behind them.

Matplotlib is imported only when a picture is drawn, so `mmnas.viz.records` is cheap to use on its own."""
from mmnas.viz.plots import draw_run, try_draw_run
from mmnas.viz.records import plots_dir, read_metrics

__all__ = ["draw_run", "plots_dir", "read_metrics", "try_draw_run"]
