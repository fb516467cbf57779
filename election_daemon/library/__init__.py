"""The library layer: the election, its session and lease, the recipe, observers, the aiozk adapter.

It imports nothing from the daemon or the command line (``make check`` enforces it).
"""
