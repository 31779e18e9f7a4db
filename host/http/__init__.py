"""HTTP: the tenants' front door (fetch handlers) and the /v1 management API, on aiohttp.

Nothing is imported here, so `dwf` commands that do not serve never load aiohttp.
"""
