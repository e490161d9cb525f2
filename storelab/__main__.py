"""``python -m storelab``: the ``storelab`` command."""

from storelab.launch import run

if __name__ == "__main__":
    run()
