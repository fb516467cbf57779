"""The verify report: ``history.jsonl``, ``verdict.json``, a self-contained ``report.html`` and a summary.

The HTML has no external assets: a timeline drawn as inline SVG (who led when, each term in
its own colour, the leader-only commands under it, faults shaded, overlaps in red, the
register's accepted and rejected writes), the failover time of every fault, the verdict per
check, and for each violation the records around it.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from election_daemon.cli.verify._checker import Verdict
from election_daemon.cli.verify._history import History, Record

if TYPE_CHECKING:
    from election_daemon.cli.verify._runner import RunResult

__all__ = ["summary", "verdict_json", "write_report"]

_WINDOW_PAD_S = 1.0
_WINDOW_RECORDS = 40

# Timeline geometry, in SVG pixels.
_WIDTH = 1200
_LABEL = 110
_ROW = 34
_TOP = 40
_RIGHT = 20
_LABEL_WIDTH = 100


def write_report(result: RunResult, directory: Path, out: TextIO) -> None:
    """Write the three files into ``directory`` and print the summary to ``out``."""
    directory.mkdir(parents=True, exist_ok=True)
    result.history.dump(directory / "history.jsonl")
    document = verdict_json(result.history, result.verdict, skipped=result.skipped)
    (directory / "verdict.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (directory / "report.html").write_text(_html(result.history, result.verdict, document), encoding="utf-8")
    print(summary(result.history, result.verdict, skipped=result.skipped), file=out)
    print(f"report: {directory / 'report.html'}", file=out)


def verdict_json(history: History, verdict: Verdict, *, skipped: Iterable[str] = ()) -> dict[str, Any]:
    """The verdict as JSON; times are seconds since the run began (``t0`` is its monotonic time)."""
    t0 = history.start

    def at(t: float) -> float:
        return round(t - t0, 3)

    params = history.first("runner", "params") or {}
    return {
        "ok": verdict.ok,
        "t0": t0,
        "params": {k: v for k, v in params.items() if k not in ("t", "source", "event")},
        "skipped_faults": list(skipped),
        "checks": [
            {
                "name": result.name,
                "ok": result.ok,
                "metrics": result.metrics,
                "violations": [
                    {
                        **violation.to_json(),
                        "at_s": at(violation.t_start),
                        "until_s": at(violation.t_end),
                        "window": history.window(
                            violation.t_start - _WINDOW_PAD_S,
                            violation.t_end + _WINDOW_PAD_S,
                            limit=_WINDOW_RECORDS,
                        ),
                    }
                    for violation in result.violations
                ],
            }
            for result in verdict.checks
        ],
        "faults": [
            {
                "fault_id": f.fault_id,
                "fault": f.name,
                "target": f.target,
                "start_s": at(f.start),
                "heal_s": at(f.heal),
                "healed_s": at(f.healed),
                "disrupted": f.disrupted,
                "failover_s": _round(f.failover_s),
                "recovery_s": _round(f.recovery_s),
                "token_before": f.token_before,
                "token_after": f.token_after,
            }
            for f in verdict.faults
        ],
        "overlaps": [
            {
                "older": {"process": o.older.process, "pid": o.older.pid, "token": o.older.token},
                "newer": {"process": o.newer.process, "pid": o.newer.pid, "token": o.newer.token},
                "start_s": at(o.start),
                "end_s": at(o.end),
                "duration_s": round(o.duration_s, 3),
                "cause": o.cause,
                "excused": o.excused,
                "detail": o.detail,
            }
            for o in verdict.overlaps
        ],
        "terms": [
            {
                "token": term.token,
                "process": term.process,
                "daemon_pid": term.daemon_pid,
                "session_id": term.session_id,
                "intervals_s": [[at(a), at(b)] for a, b in term.intervals],
            }
            for term in verdict.terms
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summary(history: History, verdict: Verdict, *, skipped: Iterable[str] = ()) -> str:
    """A few lines for the terminal: the verdict per check and the worst failover per fault."""
    params = history.first("runner", "params") or {}
    safety = verdict.result("safety").metrics
    lines = [
        f"verify: {'PASS' if verdict.ok else 'FAIL'} (seed {params.get('seed')}, {params.get('mode')}, "
        f"T = {params.get('session_timeout_s')} s, X = {params.get('slack_s')} s, "
        f"{len(verdict.faults)} faults, {len(verdict.terms)} terms, "
        f"{safety.get('accepted', 0)} writes accepted, {safety.get('rejected', 0)} rejected)"
    ]
    for result in verdict.checks:
        note = ""
        if result.name == "containment":
            causes = Counter(o.cause for o in verdict.overlaps)
            note = f"{len(verdict.overlaps)} overlaps" + (
                f" ({', '.join(f'{cause} x{n}' for cause, n in sorted(causes.items()))})" if causes else ""
            )
        elif result.name == "liveness":
            note = f"bound {result.metrics.get('bound_s')} s"
        status = "ok" if result.ok else f"FAILED ({len(result.violations)} violations)"
        lines.append(f"  {result.name:<15} {status}{'  ' + note if note else ''}")
        lines += [f"      - {violation.message}" for violation in result.violations[:5]]
    worst: dict[str, tuple[int, float | None, float | None]] = {}
    for fault in verdict.faults:
        count, failover, recovery = worst.get(fault.name, (0, None, None))
        worst[fault.name] = (count + 1, _max(failover, fault.failover_s), _max(recovery, fault.recovery_s))
    if worst:
        lines.append(f"  {'fault':<18} {'n':>2}  {'worst failover':>14}  {'worst recovery':>14}")
        for name, (count, failover, recovery) in worst.items():
            lines.append(f"  {name:<18} {count:>2}  {_seconds(failover):>14}  {_seconds(recovery):>14}")
    if skipped:
        lines.append(f"  skipped (no target found): {', '.join(skipped)}")
    return "\n".join(lines)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


# -- HTML ------------------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }
h1 .pass { color: #1a7f37; } h1 .fail { color: #cf222e; }
table { border-collapse: collapse; margin: 8px 0 20px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
td.ok { color: #1a7f37; font-weight: 600; } td.bad { color: #cf222e; font-weight: 600; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
svg text { font: 11px system-ui, sans-serif; }
.legend span { display: inline-block; margin-right: 16px; }
.swatch { display: inline-block; width: 12px; height: 12px; vertical-align: middle; margin-right: 4px; }
"""


def _html(history: History, verdict: Verdict, document: dict[str, Any]) -> str:
    e = html.escape
    status = '<span class="pass">PASS</span>' if verdict.ok else '<span class="fail">FAIL</span>'
    params = document["params"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>election-daemon verify</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>election-daemon verify: {status}</h1>",
        "<p>" + e(", ".join(f"{k} = {v}" for k, v in params.items() if v is not None)) + "</p>",
        "<h2>Checks</h2><table><tr><th>check</th><th>verdict</th><th>metrics</th></tr>",
    ]
    for check in document["checks"]:
        verdict_cell = "ok" if check["ok"] else f"{len(check['violations'])} violations"
        parts.append(
            f"<tr><td>{e(check['name'])}</td><td class='{'ok' if check['ok'] else 'bad'}'>{verdict_cell}</td>"
            f"<td>{e(json.dumps(check['metrics']))}</td></tr>"
        )
    parts.append("</table>")
    parts += ["<h2>Timeline</h2>", _legend(), _timeline(history, verdict)]
    parts.append(
        "<h2>Faults</h2><table><tr><th>#</th><th>fault</th><th>target</th><th>start</th><th>heal</th>"
        "<th>failover</th><th>command running again after heal</th><th>tokens</th></tr>"
    )
    for f in document["faults"]:
        tokens = f"{f['token_before']} → {f['token_after']}" if f["token_after"] is not None else "unchanged"
        parts.append(
            f"<tr><td>{f['fault_id']}</td><td>{e(f['fault'])}</td><td>{e(str(f['target']))}</td>"
            f"<td>{f['start_s']:.2f} s</td><td>{f['heal_s']:.2f} s</td>"
            f"<td>{_seconds(f['failover_s']) if f['disrupted'] else 'no failover'}</td>"
            f"<td>{_seconds(f['recovery_s'])}</td><td>{e(tokens)}</td></tr>"
        )
    parts.append("</table>")
    if document["skipped_faults"]:
        parts.append(f"<p>Skipped (no target found): {e(', '.join(document['skipped_faults']))}</p>")
    parts.append("<h2>Overlaps of leader-only commands</h2>")
    if document["overlaps"]:
        parts.append(
            "<table><tr><th>window</th><th>older</th><th>newer</th><th>cause</th><th>excused</th>"
            "<th>detail</th></tr>"
        )
        for o in document["overlaps"]:
            parts.append(
                f"<tr><td>{o['start_s']:.3f} to {o['end_s']:.3f} s ({o['duration_s']:.3f} s)</td>"
                f"<td>{e(o['older']['process'])} token {o['older']['token']}</td>"
                f"<td>{e(o['newer']['process'])} token {o['newer']['token']}</td><td>{e(o['cause'])}</td>"
                f"<td class='{'ok' if o['excused'] else 'bad'}'>{'yes' if o['excused'] else 'no'}</td>"
                f"<td>{e(o['detail'])}</td></tr>"
            )
        parts.append("</table>")
    else:
        parts.append("<p>None.</p>")
    violations = [v for check in document["checks"] for v in check["violations"]]
    parts.append("<h2>Violations</h2>")
    if not violations:
        parts.append("<p>None.</p>")
    for v in violations:
        window = "\n".join(json.dumps(record, separators=(",", ":")) for record in v["window"])
        parts.append(
            f"<h3>{e(v['check'])}: {e(v['kind'])} at {v['at_s']:.3f} s</h3><p>{e(v['message'])}</p>"
            f"<p>Records from {v['at_s'] - _WINDOW_PAD_S:.3f} s to {v['until_s'] + _WINDOW_PAD_S:.3f} s "
            f"(at most {_WINDOW_RECORDS}):</p><pre>{e(window)}</pre>"
        )
    parts.append("</body></html>\n")
    return "".join(parts)


def _legend() -> str:
    items = [
        ("hsl(210,70%,60%)", "term (one colour per token)"),
        ("#333", "leader-only command running"),
        ("rgba(255,165,0,0.25)", "fault, until healed (its number below the axis)"),
        ("rgba(220,0,0,0.45)", "two commands at once"),
        ("#2da44e", "write accepted"),
        ("#cf222e", "write rejected"),
    ]
    spans = "".join(
        f"<span><i class='swatch' style='background:{colour}'></i>{html.escape(text)}</span>"
        for colour, text in items
    )
    return f"<p class='legend'>{spans}</p>"


def _rect(x: float, y: float, width: float, height: float, *, fill: str, title: str) -> str:
    return (
        f"<rect x='{x}' y='{y}' width='{max(width, 1.0):.1f}' height='{height}' fill='{fill}'>"
        f"<title>{html.escape(title)}</title></rect>"
    )


def _timeline(history: History, verdict: Verdict) -> str:  # noqa: C901 (one SVG, drawn in one pass)
    e = html.escape
    t0, t1 = history.start, max(history.end, history.start + 1.0)
    processes = sorted({str(r["process"]) for r in history.select("daemon")}, key=lambda p: (len(p), p))
    rows = {process: index for index, process in enumerate(processes)}
    register_row = len(processes)
    height = _TOP + (len(processes) + 1) * _ROW + 36
    plot = _WIDTH - _LABEL - _RIGHT
    right = _WIDTH - _RIGHT

    def x(t: float) -> float:
        return round(_LABEL + (t - t0) / (t1 - t0) * plot, 1)

    def y(row: int) -> int:
        return _TOP + row * _ROW

    out = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{_WIDTH}' height='{height}'>"]
    for row, name in [*((rows[p], p) for p in processes), (register_row, "register")]:
        line_y = y(row) + _ROW
        out.append(f"<text x='4' y='{y(row) + 20}'>{e(name)}</text>")
        out.append(f"<line x1='{_LABEL}' x2='{right}' y1='{line_y}' y2='{line_y}' stroke='#eee'/>")
    bottom = y(register_row) + _ROW
    for tick in _ticks(t1 - t0):
        at = x(t0 + tick)
        out.append(
            f"<line x1='{at}' x2='{at}' y1='{_TOP - 4}' y2='{bottom}' stroke='#f0f0f0'/>"
            f"<text x='{at}' y='{bottom + 14}' text-anchor='middle'>{tick:g} s</text>"
        )
    labelled_until = 0.0
    for f in verdict.faults:
        failover = f"failover {f.failover_s:.2f} s" if f.failover_s is not None else "no failover"
        title = f"fault {f.fault_id}: {f.name} on {f.target}; {failover}"
        out.append(
            _rect(
                x(f.start),
                _TOP - 4,
                x(f.healed) - x(f.start),
                bottom - _TOP + 4,
                fill="rgba(255,165,0,0.25)",
                title=title,
            )
        )
        number_y = bottom + 28
        out.append(
            f"<text x='{x(f.start)}' y='{number_y}' text-anchor='middle' fill='#b36b00'>{f.fault_id}</text>"
        )
        # Labels that would run into the previous one are left to the tooltip.
        if x(f.start) >= labelled_until:
            out.append(f"<text x='{x(f.start) + 2}' y='{_TOP - 22}'>{e(f.name)}</text>")
            out.append(f"<text x='{x(f.start) + 2}' y='{_TOP - 9}' fill='#666'>{e(failover)}</text>")
            labelled_until = x(f.start) + _LABEL_WIDTH
    # Hues from blue onwards, away from the red of overlaps.
    hues = {term.token: 30 + (170 + index * 67) % 280 for index, term in enumerate(verdict.terms)}
    for term in verdict.terms:
        term_row = rows.get(term.process)
        if term_row is None:
            continue
        fill = f"hsl({hues[term.token]},70%,60%)"
        for start, end in term.intervals:
            title = f"{term.process} leads with token {term.token}"
            out.append(_rect(x(start), y(term_row) + 4, x(end) - x(start), 12, fill=fill, title=title))
    for run in verdict.child_runs:
        run_row = rows.get(run.process)
        if run_row is None:
            continue
        title = f"command pid {run.pid}, token {run.token}, {run.end_reason}"
        out.append(
            _rect(x(run.start), y(run_row) + 18, x(run.end) - x(run.start), 7, fill="#333", title=title)
        )
    for o in verdict.overlaps:
        title = f"{o.cause}: {o.detail}"
        out.append(
            _rect(
                x(o.start),
                _TOP,
                x(o.end) - x(o.start),
                len(processes) * _ROW,
                fill="rgba(220,0,0,0.45)",
                title=title,
            )
        )
    out += _write_marks(history.select("register", "request"), x, y(register_row))
    out.append("</svg>")
    return "".join(out)


def _write_marks(requests: list[Record], x: Callable[[float], float], top: int) -> list[str]:
    """One mark per pixel column: green if writes were accepted there, red (taller) if any rejected."""
    columns: dict[int, list[int]] = {}
    for request in requests:
        counts = columns.setdefault(int(x(float(request["t"]))), [0, 0])
        counts[0 if request.get("verdict") == "accepted" else 1] += 1
    marks = []
    for column, (accepted, rejected) in sorted(columns.items()):
        if accepted:
            marks.append(
                f"<line x1='{column}' x2='{column}' y1='{top + 14}' y2='{top + 26}' stroke='#2da44e'/>"
            )
        if rejected:
            marks.append(
                f"<line x1='{column}' x2='{column}' y1='{top + 2}' y2='{top + 26}' stroke='#cf222e'>"
                f"<title>{rejected} rejected</title></line>"
            )
    return marks


def _ticks(duration_s: float) -> list[float]:
    step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if duration_s / s <= 12), 1200)
    return [step * i for i in range(math.floor(duration_s / step) + 1)]
