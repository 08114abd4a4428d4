"""`python -m storm.cli`: the `storm` command, for launching daemons with this
very interpreter (as `storm cluster up` does)."""

from ._app import main

main()
