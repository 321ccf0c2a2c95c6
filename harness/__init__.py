"""ShopBench harness: one YAML spec per experiment, compiled into content-addressed stages.

The package's shape:

* :mod:`harness.spec` — the spec schema (pydantic) and its loading (OmegaConf); the only
  place that reads YAML.
* :mod:`harness.core` — the stage contract: declarations and discovery, slice models and
  results, artifacts, keys over code and environments, the planner and the executor.
* :mod:`harness.stages` — the built-in stages, one module each (plugins add more).
* Library packages, which take plain arguments and never import :mod:`harness.core`:
  :mod:`harness.data` (synthesis and the training mix), :mod:`harness.training`,
  :mod:`harness.inference`, :mod:`harness.quant`, :mod:`harness.shopbench` (parsers, metrics,
  Shopping MMLU, intervals) and ``shopbench_kernels`` (model surgery, in ``kernels/``).
* Around them: :mod:`harness.sweeps`, :mod:`harness.explorer` (run pages),
  :mod:`harness.public_data` (named public datasets and their cache), :mod:`harness.tracking`,
  and the command line (:mod:`harness.cli`, :mod:`harness.compare_cli`, :mod:`harness.view`).
* Utilities any layer may use: :mod:`harness.atomic`, :mod:`harness.jsonl`,
  :mod:`harness.registry`, :mod:`harness.errors`, :mod:`harness.config`,
  :mod:`harness.secrets`, :mod:`harness.project`.
"""
