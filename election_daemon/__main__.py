"""``python -m election_daemon``: the command line."""

from election_daemon.cli import main

raise SystemExit(main())
