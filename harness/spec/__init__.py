"""Experiment specs: the schema and the only code that reads YAML."""

from harness.shopbench.types import TASK_TYPES
from harness.spec.load import LoadedSpec, load_spec
from harness.spec.schema import Spec

__all__ = ["TASK_TYPES", "LoadedSpec", "Spec", "load_spec"]
