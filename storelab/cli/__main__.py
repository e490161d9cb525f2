"""``python -m storelab.cli``: the ``storelab`` command (without the launcher's early start)."""

from storelab.cli import run

run()
