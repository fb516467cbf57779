"""election_daemon: safe leader election on Apache ZooKeeper, for asyncio and as a daemon.

The public API is what this module exports; every other module is an implementation
detail unless its name is listed here.
"""

from __future__ import annotations

from election_daemon.errors import (
    ChildError,
    ConfigError,
    ConnectionLossError,
    ConnectTimeoutError,
    DataTooLargeError,
    ElectionError,
    InternalError,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotLeaderError,
    SessionLostError,
    SessionTimeoutError,
    ZooKeeperError,
)
from election_daemon.library.candidacy import Participant
from election_daemon.library.election import Election, ElectionState, Term, Transition
from election_daemon.library.observer import LeaderChange, Observer, Snapshot
from election_daemon.library.session import Session, SessionState

__all__ = [
    "ChildError",
    "ConfigError",
    "ConnectTimeoutError",
    "ConnectionLossError",
    "DataTooLargeError",
    "Election",
    "ElectionError",
    "ElectionState",
    "InternalError",
    "LeaderChange",
    "NoAuthError",
    "NoNodeError",
    "NodeExistsError",
    "NotLeaderError",
    "Observer",
    "Participant",
    "Session",
    "SessionLostError",
    "SessionState",
    "SessionTimeoutError",
    "Snapshot",
    "Term",
    "Transition",
    "ZooKeeperError",
]

__version__ = "0.1.0"
