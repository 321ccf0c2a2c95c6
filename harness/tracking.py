"""Tracking: one sink interface, a disk sink (always) and a W&B sink.

Only the executor talks to sinks; stages report through their :class:`StageResult`.
Everything logged passes through :func:`harness.secrets.redact`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Protocol

from harness.atomic import write_json
from harness.core.contract import StageResult
from harness.errors import HarnessError
from harness.jsonl import numbered_json_lines
from harness.secrets import redact


class Sink(Protocol):
    """Where a run's config, metrics, tables and artifacts go."""

    def log_config(self, config: dict[str, Any]) -> None:
        """Record the resolved (redacted) spec."""

    def log_stage(
        self,
        stage: str,
        key: str,
        result: StageResult,
        stage_dir: Path,
        wall_s: float,
        cached: bool,
    ) -> None:
        """Record one stage's outcome."""

    def finish(self) -> None:
        """Flush and close."""


class DiskSink:
    """Appends JSON lines to ``<run_dir>/metrics.jsonl`` and writes ``summary.json``."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.summary: dict[str, Any] = {}

    def _append(self, row: dict[str, Any]) -> None:
        with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as f:
            f.write(json.dumps(redact(row)) + "\n")

    def log_config(self, config: dict[str, Any]) -> None:
        write_json(self.run_dir / "config.json", redact(config), sort_keys=False)

    def log_stage(
        self,
        stage: str,
        key: str,
        result: StageResult,
        stage_dir: Path,
        wall_s: float,
        cached: bool,
    ) -> None:
        metrics = {f"{stage}/{k}": v for k, v in result.metrics.items()}
        metrics[f"{stage}/wall_s"] = wall_s
        metrics[f"{stage}/cached"] = float(cached)
        self.summary.update(metrics)
        self._append({"stage": stage, "key": key, "dir": str(stage_dir), **metrics})

    def finish(self) -> None:
        write_json(self.run_dir / "summary.json", redact(self.summary))


class WandbSink:
    """Logs to Weights & Biases: config, per-stage metrics and wall time, tables, images,
    training series, and each stage dir as an artifact by reference."""

    def __init__(
        self,
        run_dir: Path,
        *,
        project: str,
        entity: str | None,
        mode: str,
        name: str,
        tags: list[str],
        group: str | None = None,
    ) -> None:
        import wandb

        self.wandb = wandb
        self.mode = mode
        self.run = wandb.init(
            project=project,
            entity=entity,
            mode=mode,  # type: ignore[arg-type]
            name=name,
            tags=tags,
            group=group,
            dir=str(run_dir),
            reinit="finish_previous",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.step = 0

    @property
    def run_path(self) -> Path | None:
        """The local W&B run directory (for ``wandb sync``)."""
        d = getattr(self.run, "dir", None)
        return Path(d).parent if d else None

    def log_config(self, config: dict[str, Any]) -> None:
        self.run.config.update(redact(config), allow_val_change=True)

    def log_stage(
        self,
        stage: str,
        key: str,
        result: StageResult,
        stage_dir: Path,
        wall_s: float,
        cached: bool,
    ) -> None:
        wandb = self.wandb
        for name, rel in result.series.items():
            path = stage_dir / rel
            if path.is_file():
                lines = path.read_text(encoding="utf-8").splitlines()
                for _, row in numbered_json_lines(lines, path, HarnessError):
                    step = row.pop("step", None)
                    payload = {f"{stage}/{name}/{k}": v for k, v in row.items()}
                    if step is not None:
                        payload[f"{stage}/{name}/step"] = step
                    self.run.log(payload)
        data: dict[str, Any] = {f"{stage}/{k}": v for k, v in result.metrics.items()}
        data[f"{stage}/wall_s"] = wall_s
        data[f"{stage}/cached"] = int(cached)
        for name, rel in result.tables.items():
            path = stage_dir / rel
            if path.is_file():
                lines = path.read_text(encoding="utf-8").splitlines()
                rows = [row for _, row in numbered_json_lines(lines, path, HarnessError)]
                if rows:
                    cols = sorted({k for r in rows for k in r})
                    table = wandb.Table(columns=cols, allow_mixed_types=True)
                    for r in rows[:10000]:
                        table.add_data(*[_cell(r.get(c)) for c in cols])
                    data[f"{stage}/{name}"] = table
        for name, rel in result.images.items():
            path = stage_dir / rel
            if path.is_file():
                data[f"{stage}/{name}"] = wandb.Image(str(path))
        self.run.log(data)
        self.run.summary.update({k: v for k, v in data.items() if isinstance(v, int | float)})
        # Baseline stages are named `<baseline>/<stage>`; artifact names and types allow
        # only letters, digits, `-`, `_` and `.`.
        art = wandb.Artifact(
            _artifact_name(f"{stage}-{key}"),
            type=_artifact_name(stage),
            metadata={"key": key, "stage": stage},
        )
        art.add_reference(f"file://{stage_dir}", checksum=False)
        self.run.log_artifact(art)

    def finish(self) -> None:
        self.run.finish()


def _artifact_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", ".", name)


def _cell(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else json.dumps(v)


class Tracker:
    """Fans out to every sink."""

    def __init__(self, sinks: list[Sink]) -> None:
        self.sinks = sinks

    def log_config(self, config: dict[str, Any]) -> None:
        """See :meth:`Sink.log_config`."""
        for s in self.sinks:
            s.log_config(config)

    def log_stage(self, *args: Any, **kwargs: Any) -> None:
        """See :meth:`Sink.log_stage`."""
        for s in self.sinks:
            s.log_stage(*args, **kwargs)

    def finish(self) -> None:
        """See :meth:`Sink.finish`."""
        for s in self.sinks:
            s.finish()

    @property
    def wandb(self) -> WandbSink | None:
        """The W&B sink, if any."""
        return next((s for s in self.sinks if isinstance(s, WandbSink)), None)


def wandb_mode(setting: str) -> str:
    """The effective W&B mode: ``auto`` is online only when an API key is configured."""
    if setting != "auto":
        return setting
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"
