"""How a pull or a check reports what it does: notes and byte progress bars. The default reports nothing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console

from lse_engine.models.store import Progress


class PullView:
    """Silent: subclass to show notes and progress (see `RichPullView`)."""

    def note(self, text: str, warn: bool = False) -> None:
        """One line of plain text for the user (what is fetched from where; `warn`: what failed or was moved aside)."""

    @contextlib.contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Progress]:
        """A progress bar over `total` bytes; the caller advances it by the bytes it processed."""
        yield lambda n: None


class RichPullView(PullView):
    """Notes and progress bars on a rich console (stderr by default)."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console if console is not None else Console(stderr=True)

    def note(self, text: str, warn: bool = False) -> None:
        self.console.print(text, style="yellow" if warn else None, markup=False, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def bar(self, label: str, total: int | None) -> Iterator[Progress]:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn())
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(label, total=total)
            yield lambda n: progress.advance(task, n)
