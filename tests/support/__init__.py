"""Test support: what several test files share, with public names (test files do not import
from each other).

* :mod:`tests.support.paths` — the repository, the project's test data (the ShopBench
  development-format and EC-Guide fixtures, the inference rows, the prediction corpora) and
  where the real public datasets are, when they are there;
* :mod:`tests.support.tiny_models` — tiny-model builders and a catalogue of named tiny models
  built once per test run (:func:`~tests.support.tiny_models.tiny_model`);
* :mod:`tests.support.infer` — the inference tests' prompt settings and engine-comparison
  runner;
* :mod:`tests.support.openai_server` — a fault-injecting OpenAI-compatible fake server;
  :mod:`tests.support.synth_responder` — a synthesis stand-in model answering through it;
* :mod:`tests.support.vllm_server` — a real vLLM OpenAI-compatible server for a session;
* :mod:`tests.support.stages` — one stage's context planned from a real spec with overrides
  (:func:`~tests.support.stages.stage_context`) and running it in-process
  (:func:`~tests.support.stages.run_stage`): tests never write a stage's slice by hand;
* :mod:`tests.support.runs` — ``harness run`` of a spec in a subprocess;
  :mod:`tests.support.clone` — a throw-away copy of the project and its plan;
* :mod:`tests.support.wandb_log` — reading a W&B offline run's log back.

Only the few tests about the real data itself (its checksums, its 96 rows, parity on its
rows) need the real ShopBench development set or EC-Guide; they take the ``real_dev_set`` /
``real_ec_guide`` fixtures (``tests/conftest.py``), which skip with the command that gets
the data (``harness data fetch shopbench-dev`` / ``harness data fetch ec-guide``). Every
other test runs on the project's fixtures. To see which tests those are, hide the real data:

    HARNESS_TEST_SHARED_DATA=/nonexistent HARNESS_DATA_DIR=/nonexistent python -m pytest -rs

(``HARNESS_TEST_SHARED_DATA`` replaces the shared copy's location ``../shared/data``;
``HARNESS_DATA_DIR`` the harness's data cache.)
"""
