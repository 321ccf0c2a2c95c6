"""The stage contract and the machinery around it: stage declarations and discovery
(:mod:`~harness.core.stage`), what a stage gets and returns (:mod:`~harness.core.contract`),
its artifacts (:mod:`~harness.core.artifacts`), cache keys over code and environments
(:mod:`~harness.core.codehash`, :mod:`~harness.core.envs`), the planner
(:mod:`~harness.core.plan`) and the executor (:mod:`~harness.core.executor`,
:mod:`~harness.core.stage_main`).

Library packages (data, training, inference, quant, shopbench, kernels) never import it.
"""
