"""Locating a ZooKeeper installation and a Java runtime to run its servers with."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from election_daemon.testing._errors import ZooKeeperNotFoundError

__all__ = ["ZooKeeperInstall", "find_zookeeper"]

MAIN_CLASS = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

_INSTALL_HINT = (
    "install ZooKeeper (apt-get install zookeeper) "
    "or set ZOOKEEPER_HOME to an Apache ZooKeeper release directory"
)

_DEBIAN_JAVA_DIR = Path("/usr/share/java")
# Debian's zookeeper.jar names its dependencies in its manifest Class-Path, but neither a logging
# binding (without those two jars the server logs nothing at all) nor all of Netty: the Netty
# connection factory, which serves TLS (secureClientPort), also needs codec, resolver and
# unix-common, or every TLS connection fails with NoClassDefFoundError.
_DEBIAN_COMPANION_JARS = (
    "slf4j-log4j12.jar",
    "log4j-1.2.jar",
    "netty-codec.jar",
    "netty-resolver.jar",
    "netty-transport-native-unix-common.jar",
)


@dataclass(frozen=True)
class ZooKeeperInstall:
    """How to run a ZooKeeper server: the java executable, the classpath and where they were found."""

    java: str
    classpath: tuple[str, ...]
    source: str
    main_class: str = MAIN_CLASS

    def command(self, jvm_options: tuple[str, ...], config_path: Path) -> list[str]:
        """The argv that runs one server from ``config_path`` with extra JVM options."""
        return [
            self.java,
            *jvm_options,
            "-cp",
            os.pathsep.join(self.classpath),
            self.main_class,
            str(config_path),
        ]


def find_zookeeper() -> ZooKeeperInstall:
    """Find ZooKeeper and Java, or raise :class:`ZooKeeperNotFoundError` with an install hint.

    ZooKeeper, first match wins: ``ZOOKEEPER_CLASSPATH`` (a full classpath), ``ZOOKEEPER_JAR``
    (a server jar whose dependencies its manifest or its directory provide), ``ZOOKEEPER_HOME``
    (a release directory with ``lib/*.jar``), then Debian's ``zookeeper`` package.
    Java: ``$JAVA_HOME/bin/java``, else ``java`` on ``PATH``.
    """
    classpath, source = _find_classpath()
    return ZooKeeperInstall(java=_find_java(), classpath=classpath, source=source)


def _find_classpath() -> tuple[tuple[str, ...], str]:
    if classpath := os.environ.get("ZOOKEEPER_CLASSPATH"):
        return tuple(entry for entry in classpath.split(os.pathsep) if entry), "ZOOKEEPER_CLASSPATH"
    if jar := os.environ.get("ZOOKEEPER_JAR"):
        jar_path = Path(jar)
        if not jar_path.is_file():
            raise ZooKeeperNotFoundError(f"ZOOKEEPER_JAR={jar} is not a file: {_INSTALL_HINT}")
        return (str(jar_path), *_companion_jars(jar_path.parent)), f"ZOOKEEPER_JAR={jar}"
    if home := os.environ.get("ZOOKEEPER_HOME"):
        home_path = Path(home)
        jars = sorted(home_path.glob("lib/*.jar")) + sorted(home_path.glob("*.jar"))
        if not jars:
            raise ZooKeeperNotFoundError(f"ZOOKEEPER_HOME={home} has no lib/*.jar: {_INSTALL_HINT}")
        return tuple(str(path) for path in jars), f"ZOOKEEPER_HOME={home}"
    debian_jar = _DEBIAN_JAVA_DIR / "zookeeper.jar"
    if debian_jar.is_file():
        return (str(debian_jar), *_companion_jars(_DEBIAN_JAVA_DIR)), "Debian package"
    raise ZooKeeperNotFoundError(f"ZooKeeper not found: {_INSTALL_HINT}")


def _companion_jars(directory: Path) -> tuple[str, ...]:
    return tuple(str(directory / name) for name in _DEBIAN_COMPANION_JARS if (directory / name).is_file())


def _find_java() -> str:
    if java_home := os.environ.get("JAVA_HOME"):
        java = Path(java_home) / "bin" / "java"
        if not os.access(java, os.X_OK):
            raise ZooKeeperNotFoundError(f"JAVA_HOME={java_home} has no bin/java: fix JAVA_HOME or unset it")
        return str(java)
    java_on_path = shutil.which("java")
    if java_on_path is None:
        raise ZooKeeperNotFoundError(
            "java not found: install a Java runtime (apt-get install zookeeper pulls one in) or set JAVA_HOME"
        )
    return java_on_path
