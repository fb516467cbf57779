"""Shared test configuration: the real-ZooKeeper fixtures, and pytester for testing them."""

pytest_plugins = ["election_daemon.testing.pytest_plugin", "pytester"]
