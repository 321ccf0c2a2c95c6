"""Reading a W&B offline run's transaction log (``run-<id>.wandb``) back, for tests.

The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic 0xBEE1, version 0), then
32 KiB blocks of records, each with a 7-byte header (crc32, length, type: 1 full, 2 first,
3 middle, 4 last) around a serialised ``wandb_internal_pb2.Record``.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = struct.Struct("<4sHB")
REC = struct.Struct("<IHB")


def records(path: Path) -> list[Any]:
    """Every protobuf Record in a .wandb file."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, _ = HEADER.unpack_from(data, 0)
    assert ident == b":W&B" and magic == 0xBEE1, f"not a W&B log: {path}"
    pos, out, partial = HEADER.size, [], b""
    while pos + REC.size <= len(data):
        left = BLOCK - (pos % BLOCK)
        if left < REC.size:
            pos += left
            continue
        _, length, kind = REC.unpack_from(data, pos)
        if length == 0 and kind == 0:
            pos += left  # zero padding to the end of the block
            continue
        if pos + REC.size + length > len(data):
            break  # a record still being written
        chunk = data[pos + REC.size : pos + REC.size + length]
        pos += REC.size + length
        if kind == 1:
            partial = chunk
        elif kind == 2:
            partial = chunk
            continue
        elif kind == 3:
            partial += chunk
            continue
        elif kind == 4:
            partial += chunk
        rec = wandb_internal_pb2.Record()
        rec.ParseFromString(partial)
        out.append(rec)
        partial = b""
    return out


def finished_records(path: Path, timeout_s: float = 30.0) -> list[Any]:
    """The records of a finished run's log, once its ``exit`` record is there.

    ``run.finish()`` can return while the W&B service process is still writing the log (the
    history row of the last step comes late); a run's log is complete with its exit record.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        recs = records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in recs):
            return recs
        assert time.monotonic() < deadline, f"{path}: no exit record after {timeout_s} s"
        time.sleep(0.05)


def read_run(run_dir: Path) -> dict[str, Any]:
    """Config, history rows and summary of a finished offline run dir (``offline-run-*``)."""
    log = next(run_dir.glob("run-*.wandb"))
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for rec in finished_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "config":
            for item in rec.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "run":
            for item in rec.run.config.update:
                config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            history.append(
                {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in rec.history.item
                }
            )
        elif kind == "summary":
            for item in rec.summary.update:
                summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return {"config": config, "history": history, "summary": summary}
