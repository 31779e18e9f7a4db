"""`python -m host.sandbox.compile_server`: the compile lane's warm server (see
`compile_lane`), run by the host as a subprocess; it forks a capped child per module."""

import sys

from .compile_lane import serve

serve(sys.stdin.buffer, sys.stdout.buffer)
