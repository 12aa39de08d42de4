"""`python -m hptrack.cli ...` runs the hptrack command."""

from .main import main

main()
