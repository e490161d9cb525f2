"""``storelab chunkers``: every chunker, its tool, default parameters and identity hash."""

from __future__ import annotations

import click

from storelab.cli.base import JSON, SectionedCommand, option
from storelab.cli.output import out, print_json, table


@click.command("chunkers", cls=SectionedCommand)
@option("--json", JSON, is_flag=True, help="Print the list as JSON.")
def chunkers_command(as_json: bool) -> None:
    """List every chunker: the tool that cuts this way, its default id, the hash its tool names chunks by, and how storelab proves it exact.

    Pick one with --chunker NAME; change its parameters with --chunker-params KEY=VALUE,…
    (the keys are those in its id). Presets: attic (fastcdc2016 at attic's sizes), desync
    (casync), snix (fastcdc2020).

    \b
    Example: storelab ingest-dir ./tree -o study/ --chunker borg --chunker-params min_exp=10,max_exp=16,mask_bits=12
    """
    from storelab.chunking import CATALOG, make_spec

    rows = [
        {"chunker": info.name, "tool": info.tool, "default_id": make_spec(name).id, "identity_hash": info.identity_hash,
         "source": info.source, "proven": info.proven}
        for name, info in CATALOG.items()
    ]  # fmt: skip
    if as_json:
        print_json(rows)
        return
    shown = table(title="chunkers (storelab keys its tables by BLAKE3 whatever the chunker)", title_justify="left")
    for column in ("chunker", "tool", "default id", "names chunks by"):
        shown.add_column(column, overflow="fold")
    for row in rows:
        shown.add_row(row["chunker"], row["tool"], row["default_id"], row["identity_hash"])
    out().print(shown)
