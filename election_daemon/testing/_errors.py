"""The errors the testing harness raises when ZooKeeper cannot be found or started."""

from __future__ import annotations

from election_daemon.errors import ElectionError

__all__ = ["ZooKeeperNotFoundError", "ZooKeeperStartError"]


class ZooKeeperNotFoundError(ElectionError):
    """No ZooKeeper installation or no Java runtime was found; the message says how to install one."""


class ZooKeeperStartError(ElectionError):
    """A ZooKeeper server exited or did not serve in time; the message ends with the tail of its log."""
