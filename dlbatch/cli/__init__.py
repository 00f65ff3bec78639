"""The `dlbatch` admin command line (Typer)."""
