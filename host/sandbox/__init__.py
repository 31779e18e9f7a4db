"""Running tenant code: the ABI, wasmtime stores with the tenant's limits, the isolate pool.

The sandbox knows nothing of databases. A workflow guest talks to a `GuestJournal`
(`journal_port`), which the durable engine implements; a fetch handler to a
`FetchBindingPort` (`fetch`), which the HTTP layer implements.
"""
