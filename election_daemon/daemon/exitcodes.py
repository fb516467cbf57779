"""The daemon's documented process exit codes, and their table for ``--help`` and the README."""

from __future__ import annotations

import enum
import textwrap
from collections.abc import Iterable, Mapping

__all__ = ["ExitCode", "render_exit_codes"]

_WIDTH = 79


class ExitCode(enum.IntEnum):
    """How ``election-daemon`` ends; each member's ``__doc__`` is its documented meaning."""

    # The description rides in the member tuple so that it is available at runtime for --help;
    # ``doc`` has a default only so that ``ExitCode(3)`` lookups type-check.
    def __new__(cls, value: int, doc: str = "") -> ExitCode:
        member = int.__new__(cls, value)
        member._value_ = value
        member.__doc__ = doc
        return member

    OK = 0, "clean shutdown"
    FAILURE = (
        1,
        ("unexpected internal error, which is a bug: the traceback is in the log, one line on stderr"),
    )
    USAGE = 2, "bad command line, environment or config file"
    ZK_UNREACHABLE = 3, "no ZooKeeper server answered within --connect-timeout"
    ZK_REFUSED = (
        4,
        (
            "ZooKeeper refused our setup: session timeout outside the server's range, no permission "
            "on the path, data too large for a node, or a path the server rejects"
        ),
    )
    COMMAND_FAILED = 5, "the leader-only command or a hook command does not exist or is not executable"
    LEADERSHIP_LOST = 6, "leadership ended and --exit-on-loss was given"
    VERIFY_FAILED = 7, "the verify subcommand found a violation"
    OPERATION_FAILED = (
        8,
        (
            "an operator command could not do what was asked: no leader to step down, no such "
            "participant, or the new leader did not appear within --wait"
        ),
    )
    ELECTION_FAILED = (
        9,
        (
            "the election's own loop failed repeatedly (a bug, or hostile data in ZooKeeper): "
            "leadership was given up and the command stopped; see the internal_error events"
        ),
    )
    TLS_FAILED = (
        10,
        (
            "no TLS connection to ZooKeeper: its certificate is not trusted (--tls-ca), has expired "
            "or names another host, our client certificate was refused, or TLS was spoken to a "
            "plain port or the reverse"
        ),
    )
    NOT_ELECTED = (
        11,
        (
            "--try SECONDS passed without this participant being elected: the command did not run "
            "(another participant leads, or ZooKeeper was not reached in time)"
        ),
    )


_CHILD_STATUS_NOTE = (
    "With --on-child-exit exit (the default) and with --once, the daemon exits with the "
    "leader-only command's own status (128+N when signal N killed it), which can coincide "
    "with the codes above."
)


def render_exit_codes(
    codes: Iterable[ExitCode] | None = None, meanings: Mapping[ExitCode, str] | None = None
) -> str:
    """Return the exit code table as plain text, ready for argparse's epilog or the README.

    Without ``codes``, every code and the note on the command's own status (the daemon's table);
    ``meanings`` replaces the documented meaning of some codes for one subcommand.
    """
    shown = list(ExitCode if codes is None else codes)
    name_width = max(len(code.name) for code in shown)
    lines = ["exit codes:"]
    for code in shown:
        head = f"  {code.value}  {code.name:<{name_width}}  "
        lines.append(
            textwrap.fill(
                (meanings or {}).get(code) or code.__doc__ or "",
                width=_WIDTH,
                initial_indent=head,
                subsequent_indent=" " * len(head),
                break_on_hyphens=False,
            )
        )
    if codes is not None:
        return "\n".join(lines)
    lines.append(
        textwrap.fill(
            _CHILD_STATUS_NOTE,
            width=_WIDTH,
            initial_indent="  ",
            subsequent_indent="  ",
            break_on_hyphens=False,
        )
    )
    return "\n".join(lines)
