"""`python -m hptrack.cli ...` runs the hptrack command."""

from hptrack.cli.main import main

main()
