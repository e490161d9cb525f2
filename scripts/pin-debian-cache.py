"""Pin the debian-cache slice from this machine's apt index (bookworm and bookworm-security).

    .venv/bin/python scripts/pin-debian-cache.py [--out datasets/debian-cache/pins.json]

Reads the two suites' ``Packages`` files apt keeps under /var/lib/apt/lists (run ``apt-get
update`` first), chooses the slice with ``storelab.datasets.debian_cache.pin_slice`` and writes
the manifest the fetch checks every download against.
"""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from storelab.datasets.debian_cache import pin_slice, write_pins

LISTS = Path("/var/lib/apt/lists")


def index(pattern: str) -> str:
    files = sorted(LISTS.glob(pattern))
    if not files:
        raise SystemExit(f"no {pattern} under {LISTS}: run apt-get update")
    return subprocess.run(["/usr/lib/apt/apt-helper", "cat-file", str(files[0])], check=True, capture_output=True, text=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "datasets" / "debian-cache" / "pins.json")
    args = parser.parse_args()
    pins = pin_slice(index("*_debian_dists_bookworm_main_binary-amd64_Packages*"), index("*bookworm-security_main_binary-amd64_Packages*"))
    write_pins(pins, args.out)
    small = [p for p in pins if p.small]
    print(f"{args.out}: {len(pins)} package versions, {sum(p.installed_size for p in pins) / 1e9:.2f} GB installed, "
          f"{sum(p.size for p in pins) / 1e6:.0f} MB of .debs; small slice {len(small)}, {sum(p.installed_size for p in small) / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
