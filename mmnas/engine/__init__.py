"""The shared engine: trainer, searcher, checkpoints, schedule, logging, devices. It never imports a concrete task."""
