"""`python -m wavefleet` is the `wave` command."""

from wavefleet.cli import main

main()
