"""What the demo shows: :class:`LiveView` redraws the participants and failovers on a terminal,
:class:`PlainView` prints one line per failover and a summary for pipes and CI logs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Protocol, TextIO

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from election_daemon.cli.demo.model import Cluster, Failover, FaultKind, Summary, token_text

__all__ = ["LiveView", "PlainView", "View"]

_REFRESH_S = 0.125
_SHOWN_FAILOVERS = 8
_PARTICIPANT_COLUMNS: tuple[tuple[str, JustifyMethod], ...] = (
    ("id", "left"),
    ("pid", "right"),
    ("state", "left"),
    ("token", "right"),
    ("node", "left"),
    ("waits on", "left"),
)


def _short_node(node: str | None) -> str:
    if node is None:
        return ""
    # _c_<guid>-<sequence>: the sequence orders the queue.
    name = node.rsplit("/", 1)[-1]
    return f"…{name[-11:]}" if len(name) > 12 else name


class View(Protocol):
    """What the scenario tells whoever watches."""

    def open(self, title: str, details: Sequence[str]) -> None: ...

    def status(self, text: str, *, since_s: float | None = None, until_s: float | None = None) -> None:
        """What happens now; ``since_s``/``until_s`` (monotonic) add a running clock."""

    def failover(self, failover: Failover, total: int) -> None: ...

    async def close(self) -> None:
        """Stop redrawing, leaving the last picture."""

    def summary(self, summary: Summary) -> None: ...


class PlainView:
    """For pipes and CI logs: a header, one line per failover, a summary."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def _print(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def open(self, title: str, details: Sequence[str]) -> None:
        self._print(f"{title}: {'; '.join(details)}")

    def status(self, text: str, *, since_s: float | None = None, until_s: float | None = None) -> None:
        """Progress is for the live view; a log gets the results."""

    def failover(self, failover: Failover, total: int) -> None:
        self._print(failover.line(total))

    async def close(self) -> None:
        """Nothing to stop: every line is out already."""

    def summary(self, summary: Summary) -> None:
        self._print(summary.line())


class LiveView:
    """For a terminal: the participants, the failovers and what happens now, redrawn in place."""

    def __init__(self, cluster: Cluster, console: Console, total_faults: int) -> None:
        self._cluster = cluster
        self._console = console
        self._total = total_faults
        self._title = Text()
        self._status = ""
        self._since_s: float | None = None
        self._until_s: float | None = None
        self._live: Live | None = None
        self._refresher: asyncio.Task[None] | None = None

    def open(self, title: str, details: Sequence[str]) -> None:
        self._title = Text.assemble((title, "bold"), *((f"\n{detail}", "dim") for detail in details))
        # Redrawn from the event loop rather than Live's thread: the model changes on the loop.
        self._live = Live(self._render(), console=self._console, auto_refresh=False)
        self._live.start()
        self._refresher = asyncio.ensure_future(self._refresh())

    def status(self, text: str, *, since_s: float | None = None, until_s: float | None = None) -> None:
        self._status = text
        self._since_s = since_s
        self._until_s = until_s

    def failover(self, failover: Failover, total: int) -> None:
        """The failovers table shows it at the next redraw."""

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        self._status = ""
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()

    def summary(self, summary: Summary) -> None:
        self._console.print(Text(summary.line(), style="bold green" if summary.ok else "bold red"))

    async def _refresh(self) -> None:
        assert self._live is not None
        while True:
            self._live.update(self._render(), refresh=True)
            await asyncio.sleep(_REFRESH_S)

    def _render(self) -> RenderableType:
        parts: list[RenderableType] = [self._title, self._participants()]
        output = self._leader_output()
        if output is not None:
            parts.append(output)
        if self._cluster.failovers:
            parts.append(self._failovers())
        if self._status:
            text = self._status
            now = time.monotonic()
            if self._since_s is not None:
                text += f" ({now - self._since_s:.1f} s)"
            if self._until_s is not None:
                text += f" in {max(0.0, self._until_s - now):.1f} s"
            parts.append(Spinner("dots", text=Text(text, style="cyan")))
        return Group(*parts)

    def _participants(self) -> Table:
        table = Table(title="participants, in queue order", title_justify="left", box=box.SIMPLE_HEAD)
        for name, justify in _PARTICIPANT_COLUMNS:
            table.add_column(name, justify=justify, no_wrap=True)
        for row in self._cluster.rows():
            table.add_row(
                f"★ {row.label}" if row.leader else row.label,
                "" if row.pid is None else str(row.pid),
                row.state,
                "" if row.token is None else str(row.token),
                _short_node(row.node),
                row.waits_on or "",
                style="bold green" if row.leader else ("dim" if row.gone else ""),
            )
        return table

    def _leader_output(self) -> Text | None:
        leader = self._cluster.leader()
        if leader is None or not leader.output:
            return None
        return Text.assemble(
            f"{leader.id}'s leader-only command says: ", (leader.output, "green"), no_wrap=True
        )

    def _failovers(self) -> Table:
        failovers = self._cluster.failovers
        earlier = len(failovers) - _SHOWN_FAILOVERS
        title = f"failovers ({earlier} earlier not shown)" if earlier > 0 else "failovers"
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
        table.add_column("#", justify="right")
        table.add_column("fault")
        table.add_column("leader change")
        table.add_column("duration", justify="right")
        table.add_column("new token", justify="right")
        for f in failovers[-_SHOWN_FAILOVERS:]:
            table.add_row(
                f"{f.number}/{self._total}",
                f"{f.kind.value} ({f.kind.description})",
                f"{f.old_leader} → {f.new_leader}",
                Text(f"{f.duration_s:.3f} s", style="green" if f.kind is FaultKind.TERM else "yellow"),
                token_text(f.token),
            )
        return table
