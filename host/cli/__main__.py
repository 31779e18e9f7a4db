"""`python -m host.cli` runs `dwf`."""

from . import main

main()
