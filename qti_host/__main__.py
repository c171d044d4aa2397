"""`python -m qti_host`: the `qti` command line."""

from qti_host.cli import main

main()
