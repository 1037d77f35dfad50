"""Live progress of a recovery: a rich bar per finalist on a terminal, a line per epoch
otherwise, nothing with ``--json``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from automc.cli.common import progress_enabled


class RecoveryView:
    """``on_finalist`` / ``on_progress`` callbacks for :mod:`automc.recover.driver`."""

    def __init__(self, *, quiet: bool = False) -> None:
        self.quiet = quiet
        self.bar: Any = None
        self.task: Any = None
        self.label = ""
        self.last_val: float | None = None
        if not quiet and progress_enabled():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}")
            )

    def on_finalist(self, number: int, index: int, count: int) -> None:
        self.label = f"recovering #{number} ({index + 1}/{count})"
        if self.bar is not None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            else:
                self.bar.start()
            self.task = self.bar.add_task(self.label, total=None, info="")
        elif not self.quiet:
            print(f"{self.label}", flush=True)

    def on_progress(self, event: Mapping[str, Any]) -> None:
        if self.quiet:
            return
        if event["event"] == "step" and self.bar is not None:
            total = int(event["epochs"]) * int(event["steps"])
            done = (int(event["epoch"]) - 1) * int(event["steps"]) + int(event["step"])
            terms = "  ".join(f"{k} {v:.3f}" for k, v in event.items() if k in ("loss", "ce", "response", "feature", "relation"))
            self.bar.update(self.task, total=total, completed=done, description=f"{self.label} epoch {event['epoch']}/{event['epochs']}", info=terms + self._val())
        elif event["event"] == "epoch":
            self.last_val = event.get("val_accuracy")
            if self.bar is None:
                val = f", validation accuracy {100 * float(event['val_accuracy']):.2f}%" if "val_accuracy" in event else ""
                print(f"  epoch {int(event['epoch'])}/{event['epochs']}: loss {event['loss']:.4f}{val} ({event['seconds']:.1f} s)", flush=True)

    def _val(self) -> str:
        return "" if self.last_val is None else f"  val {100 * float(self.last_val):.2f}%"

    def close(self) -> None:
        if self.bar is not None and self.task is not None:
            self.bar.stop()


def print_recovered(results: list[Mapping[str, Any]]) -> None:
    """One line per recovered finalist: accuracy before → after, size figures, time."""
    for r in results:
        b, a = r["before"], r["after"]
        extra = ", ".join(f"{k} {a[k]:,.4g}" for k in ("macs", "params", "latency_ms", "size_bytes") if k in a)
        print(
            f"  #{r['number']:<4} accuracy {100 * b['accuracy']:.2f}% -> {100 * a['accuracy']:.2f}%"
            f"  ({len(r['history'])} epochs, {r['train_seconds']:.0f} s{', ' + extra if extra else ''})"
        )
