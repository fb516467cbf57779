"""The daemon layer: configuration, one participant running a command, process control, hooks,
systemd, HTTP endpoints, metrics and logs. It uses the library and knows nothing of the command line.
"""
