"""Experiment specs: the schema and the only code that reads YAML."""

from harness.spec.load import LoadedSpec, load_spec
from harness.spec.schema import STAGE_ORDER, TASK_TYPES, Spec

__all__ = ["STAGE_ORDER", "TASK_TYPES", "LoadedSpec", "Spec", "load_spec"]
