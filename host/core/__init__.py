"""The vocabulary every layer shares: errors, ids, time, msgpack, limits, the data model.

Nothing here imports another part of the host: the sandbox, the store, the durable engine
and the HTTP layer all build on it.
"""
