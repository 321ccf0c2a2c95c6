"""Sweeps over a spec: W&B sweep files, trials through the harness, Ray / W&B executors."""

from harness.sweeps.config import Metric, Parameter, Sweep, SweepError, load_sweep

__all__ = ["Metric", "Parameter", "Sweep", "SweepError", "load_sweep"]
