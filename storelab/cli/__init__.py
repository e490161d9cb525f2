"""``storelab …``: parse arguments, call the library, print. No logic of its own.

One module per command group, loaded only when one of its commands runs: ``storelab --help``
imports click and nothing else. Shared options live in :mod:`storelab.cli.options`, printing
in :mod:`storelab.cli.output`, the click classes in :mod:`storelab.cli.base`.

Exit codes: 0 ok, 1 failed (one line on stderr naming the input), 2 usage or options that do
not fit together, 130 interrupted, 70 an internal error (a bug: ``STORELAB_DEBUG=1`` shows
its traceback).
"""

from __future__ import annotations

import os
import sys

import click

from storelab import __version__
from storelab.cli.base import LazyGroup
from storelab.cli.output import error_line
from storelab.errors import ConfigError, Interrupted, StorelabError

__all__ = ["COMMANDS", "app", "main", "run"]

COMMANDS: dict[str, tuple[str, str]] = {
    "ingest-dir": ("storelab.cli.ingest:ingest_dir_command", "Ingest a directory tree as one snapshot of a dataset."),
    "ingest-nar": ("storelab.cli.ingest:ingest_nar_command", "Ingest NAR archives, one snapshot each, as a binary cache serves them."),
    "sweep": ("storelab.cli.ingest:sweep_command", "Chunk the same tree under every combination of chunker and average size."),
    "chunkers": (
        "storelab.cli.chunkers:chunkers_command",
        "List every chunker: the tool that cuts this way, its default id, the hash its tool names chunks by, and how storelab proves it exact.",
    ),
    "what-if": ("storelab.cli.ingest:what_if_command", "How much more would dedup if the data were changed before chunking."),
    "stats": (
        "storelab.cli.analysis:stats_command",
        "Dedup figures at every level (NAR, blob, chunk per chunking, directory): overall and per snapshot.",
    ),
    "compare": (
        "storelab.cli.models:compare_command",
        "What snix, attic, nix-casync, ncps, restic, borg and a plain binary cache would each store for the same snapshots.",
    ),
    "report": ("storelab.cli.analysis:report_command", "Write every analysis of a dataset, figures embedded, into one report."),
    "snapshots": ("storelab.cli.dataset:snapshots_command", "List the snapshots of a dataset, or remove some."),
    "compact": ("storelab.cli.dataset:compact_command", "Merge a dataset's small files into larger ones, and delete what nothing reads."),
    "check": ("storelab.cli.dataset:check_command", "Report what a reader of a dataset would refuse, one line each; exit 1 if anything."),
    "migrate": ("storelab.cli.dataset:migrate_command", "Convert a dataset of storelab's own Parquet parts (schema 3) into a DuckLake (schema 4)."),
    "render-nar": (
        "storelab.cli.dataset:render_nar_command",
        "Write a snapshot back as a NAR, from its castore description and a blob store.",
    ),
    "store": ("storelab.cli.store:store_app", "Look after a store written with --store."),
    "bench-upload": (
        "storelab.cli.store:bench_upload_command",
        "How much concurrent small-blob upload saves over a slow link.",
    ),
    "layers": (
        "storelab.cli.layers:layers_app",
        "Container layer study: group an image's store paths into layers and simulate pulls through a layer cache.",
    ),
    "datasets": (
        "storelab.cli.datasets:datasets_app",
        "Real corpora to study: the ones shipped in datasets/ (checked against their manifests) and ones fetched from PyPI and Debian.",
    ),
}
"""Every top-level command: where it lives and its one-line summary (``storelab --help``
lists these without importing any command; a test holds each equal to the command's own)."""


def _print_version(ctx: click.Context, _: click.Parameter, value: bool) -> None:
    if value:
        print(f"storelab {__version__}")
        ctx.exit()


@click.group(
    cls=LazyGroup,
    name="storelab",
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True, "max_content_width": 120},
)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version, help="Print the version and exit.")
def app() -> None:
    """Study deduplication in content-addressed stores.

    Ingest directory trees and NARs as snix's castore would store them (BLAKE3 digests, FastCDC
    chunks, zstd sizes, optionally into a snix-layout object store) into a Parquet dataset, then ask it
    for dedup figures at every level, chunker sweeps, what-ifs, store costs, upload speed over slow
    links and container layer plans; export it all as a report.

    \b
      storelab ingest-dir ./numpy-1.26.3 --label numpy-1.26.3 --out study/
      storelab ingest-dir ./numpy-1.26.4 --label numpy-1.26.4 --out study/
      storelab stats study/
      storelab report study/ -o study.html
    """


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors, exit codes 0 ok, 1 failed, 2 usage, 130 interrupted."""
    debug = bool(os.environ.get("STORELAB_DEBUG"))
    try:
        code = app.main(args=argv, prog_name="storelab", standalone_mode=False)
        if isinstance(code, int):  # click hands back an Exit's code (--help, --version, exit 1)
            return code
    except click.exceptions.Exit as exit_:
        return exit_.exit_code
    except click.ClickException as usage:  # usage errors: bad option, missing argument
        usage.show()
        return usage.exit_code
    except click.Abort:
        error_line("storelab: interrupted")
        return 130
    except ConfigError as error:
        error_line(f"storelab: error: {error}")
        return 2
    except Interrupted as error:
        error_line(f"storelab: {error}")
        return 130
    except StorelabError as error:
        error_line(f"storelab: error: {error}")
        return 1
    except KeyboardInterrupt:
        error_line("storelab: interrupted")
        return 130
    except Exception as error:
        if debug:
            raise
        error_line(f"storelab: internal error: {type(error).__name__}: {error} (set STORELAB_DEBUG=1 for the traceback)")
        return 70
    return 0


def run() -> None:
    """Console-script entry point.

    Once a command has succeeded and its output is flushed, the process ends at once: tearing
    the interpreter down (freeing every object, unloading Arrow and numpy) takes a tenth of a
    second and does nothing for the user — the command has closed its files, committed its
    snapshot and shut its pools. A failed command exits the usual way, so that what an error
    left half torn down (a worker pool's queues) is cleaned up by the interpreter.
    """
    code = main()
    if code != 0:  # a failed command may leave pools half torn down: let the interpreter finish them
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: let the interpreter report it as it would
        sys.exit(code)
    os._exit(code)
