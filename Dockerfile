# The election daemon: `docker run IMAGE --hosts zk:2181 --path /app/leader -- COMMAND...`, or the
# same settings as ELECTION_DAEMON_* variables (see docker-compose.yml).
FROM python:3.11-slim

# Unbuffered: every JSON log line reaches `docker logs` when it is written.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# .dockerignore lets in only what the package build needs.
COPY . /tmp/src
RUN pip install /tmp/src && rm -rf /tmp/src

# A fixed numeric uid, so that orchestrators can check runAsNonRoot without reading /etc/passwd.
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin election
USER 10001:10001

# The daemon expects a reaper for orphaned processes as PID 1: run with `docker run --init` or
# Compose's `init: true`. It stops the leader-only command on SIGTERM (docker stop) before it
# leaves the election.
ENTRYPOINT ["python", "-m", "election_daemon"]
CMD ["--help"]
