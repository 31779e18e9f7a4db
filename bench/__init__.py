"""Benchmarks: our engine, DBOS Transact (the peer) and raw SQLite, measured in one run.

`make bench` (or `python -m bench --help`) runs every section in a process of its own and
prints a table; `make bench-smoke` runs the same code at tiny sizes (CI keeps it working).
Benchmarks print numbers; nothing here asserts on time.
"""
