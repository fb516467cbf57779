"""The ``make demo`` failover show: three daemons on a local ZooKeeper ensemble, leaders stopped and killed.

``python -m election_daemon.cli.demo`` starts a three-server ZooKeeper ensemble and three daemons
(``python -m election_daemon``), each with a small leader-only command that prints a line a
second. It then stops the leader a few times, either gracefully (SIGTERM) or by killing its
process group (SIGKILL), restarts it, and measures each failover from the fault to the next
``child_started``. A graceful stop hands over at once, because the daemon closes its session;
a killed leader is replaced when ZooKeeper expires its session, about a session timeout later.

On a terminal the run is a live view: the participants in queue order with the leader
highlighted, and the failovers so far. Otherwise it prints one line per failover and a
summary. The exit status is 1 if a failover misses its deadline, if a daemon dies unbidden,
or if the logs show two leader-only commands at once: a ``child_started`` while another
daemon's term is open (no ``revoked``/``child_exited`` yet).

Its parts, each a module:

- :mod:`~election_daemon.cli.demo.config`: what the demo does (:class:`DemoConfig`), and its flags,
  rows of the command line's one option table;
- :mod:`~election_daemon.cli.demo.model`: the pure model, :class:`Cluster` fed by the daemons'
  JSON log lines and by reads of the election queue, with a
  :class:`~election_daemon.testing.SafetyCheck`; the failovers and the :class:`Summary`;
- :mod:`~election_daemon.cli.demo.view`: :class:`LiveView` for a terminal, :class:`PlainView`
  for pipes and CI logs;
- :mod:`~election_daemon.cli.demo.fleet`: the daemon processes (:class:`Fleet`) and the queue
  reader (:class:`QueueObserver`);
- :mod:`~election_daemon.cli.demo.scenario`: the script of faults (:class:`Scenario`);
- :mod:`~election_daemon.cli.demo.__main__`: the program, which starts the ensemble, runs the
  scenario under a view, stops everything and gives the exit status.

Nothing is imported here, so that ``python -m election_daemon.cli.demo`` runs ``__main__`` once.
"""
