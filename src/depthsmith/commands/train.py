"""``depthsmith train``, ``depthsmith report`` and ``depthsmith data check``: exit codes for the API's results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["train_cli", "report_cli", "data_check_cli"]


def train_cli(config: str, overrides: list[str], run_dir: str | None = None, resume: bool = False,
              devices: Any = None, strategy: Any = None, accelerator: Any = None) -> int:
    """0 when the run finished; 1 when it failed (the run folder says why, checkpoints kept)."""
    from ..train import train

    result = train(config, overrides=overrides, run_dir=run_dir, resume=resume, devices=devices,
                   strategy=strategy, accelerator=accelerator)
    return 0 if result.ok else 1


def report_cli(**kwargs: Any) -> int:
    from ..report import make_report

    print(f"report written to {make_report(**kwargs)}")
    return 0


def data_check_cli(config: str | Path, out: str | Path, max_samples: int | None = None) -> int:
    """Prints the dataset's statistics; 1 when any sample could not be read."""
    from ..data.check import check_dataset, format_report

    stats = check_dataset(config, out, max_samples=max_samples)
    print(format_report(stats))
    return 1 if stats.get("unreadable") else 0
