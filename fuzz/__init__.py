"""tickloop's fuzzing boundary: hypothesis strategies of hostile input (``strategies``), the
targets and the property each holds (``targets``), and a long-running command (``run``). The
suite runs every target with a small fixed budget (tests/fuzz); ``python -m fuzz.run`` runs
them for longer, with atheris (coverage-guided) where it is installed."""
