"""The durable engine: instances, replay, the registry, the worker loop.

It runs guests through the sandbox and keeps everything in storage through the store's
interface, so it neither touches wasmtime nor writes SQL itself.
"""
