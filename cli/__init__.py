"""hptrack command-line interface."""
