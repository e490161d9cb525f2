"""``storelab layers plan`` and ``simulate``: container layers from store-path closures."""

from __future__ import annotations

from pathlib import Path

import click

from storelab.cli.base import JSON, SectionedGroup, option
from storelab.cli.output import fmt_pct, fmt_size, jsonable, out, print_json, table
from storelab.errors import ConfigError
from storelab.units import format_bytes


@click.group("layers", cls=SectionedGroup)
def layers_app() -> None:
    """Container layer study: group an image's store paths into layers and simulate pulls through a layer cache."""


AlgorithmHelp = (
    "popularity (Nixery: dominator tree, popularity × size merges), size-first (nixpkgs dockerTools' auto-layer), "
    "per-path (one layer per path while the budget lasts) or single (one layer)"
)
_BUDGET_OPTION = option("--budget", type=click.IntRange(min=1), default=94, help="Most layers of store paths (the symlink layer comes on top).")
def _popularity(path: str | None) -> dict[str, int] | None:
    from storelab.layers import load_popularity

    return load_popularity(path) if path else None


@layers_app.command("plan")
@click.argument("closure", metavar="CLOSURE.json",
           help="Runtime graph: exportReferencesGraph JSON or `nix path-info --json --recursive` output.")
@option("--algorithm", "-a", default="popularity", help=AlgorithmHelp)
@_BUDGET_OPTION
@option("--popularity", default=None,
         help="JSON map of path name (without /nix/store/<hash>-) → reference count; default: every path 1.")
@option("--root", default=None, help="With a DATASET: the image's top-level store path (or snapshot label).")
@option("--json", JSON, is_flag=True, help="Print the plan as JSON (every member path).")
def layers_plan_command(closure: str, algorithm: str, budget: int, popularity: str | None, root: str | None, as_json: bool) -> None:
    """Print the layers one image gets: member paths, bytes, merge rating.

    CLOSURE.json may also be a dataset of NARs ingested with --narinfo: the closure is then
    rebuilt from the snapshots' store paths and references (--root picks the image).

    \b
    Example: storelab layers plan closure.json --algorithm size-first --budget 20
    """
    from storelab.layers import graphs_from_dataset, load_graph, path_name, plan_layers

    if Path(closure).is_dir():
        graph = graphs_from_dataset(closure, [root] if root else None)[0]
    else:
        graph = load_graph(closure)
    plan = plan_layers(graph, algorithm, budget, _popularity(popularity))
    if as_json:
        layers = [
            {"identity": layer.identity, "kind": layer.kind, "nar_size": layer.nar_size, "rating": layer.rating, "members": list(layer.members)}
            for layer in plan.layers
        ]
        print_json({"image": plan.image, "algorithm": algorithm, "budget": budget, "nar_size": plan.nar_size, "layers": layers})
        return
    shown = table(
        title=f"{plan.image}: {len(graph.paths)} paths, {format_bytes(plan.nar_size)} in {len(plan.layers)} layers ({algorithm}, budget {budget})",
        title_justify="left",
    )
    for col in ("#", "paths", "bytes", "rating", "layer", "members"):
        shown.add_column(col, justify="left" if col in ("layer", "members") else "right")
    for number, layer in enumerate(plan.layers):
        names = [path_name(m) for m in layer.members] or ["(the image's symlink farm)"]
        members = ", ".join(names[:4]) + (f", … {len(names) - 4} more" if len(names) > 4 else "")
        rating = f"{layer.rating:,}" if layer.rating else "–"
        shown.add_row(str(number), str(len(layer.members)), fmt_size(layer.nar_size), rating, layer.identity[:12], members)
    out().print(shown)


@layers_app.command("simulate")
@click.argument("images", metavar="IMAGES_DIR", help="Folder of image closures (*.json), pulled in name order.")
@option("--algorithm", "-a", default="popularity,size-first,per-path,single", help="Comma-separated: " + AlgorithmHelp)
@_BUDGET_OPTION
@option("--popularity", default=None, help="Popularity JSON; default IMAGES_DIR/popularity.json if it exists, else every path 1.")
@option("--out", "-o", "out_dir", default=None, help="Also write the table to OUT/pulls.parquet.")
@option("--root", multiple=True, help="With a DATASET of NARs: an image's top-level store path or label; repeat, in pull order.")
@option("--json", JSON, is_flag=True, help="Print the table as JSON.")
def layers_simulate_command(
    images: str, algorithm: str, budget: int, popularity: str | None, out_dir: str | None, root: tuple[str, ...],
    as_json: bool,
) -> None:  # fmt: skip
    """Pull a sequence of images through a registry's layer cache, for each algorithm.

    IMAGES_DIR may also be a dataset of NARs ingested with --narinfo: each --root is an image
    whose closure comes from the snapshots' store paths and references.

    Each image is planned, then pulled: a layer whose identity (hash of its member paths) is
    already cached is reused, any other is pulled. Prints bytes pulled per image, layers
    reused, hit rates and what the registry stores; totals per algorithm at the end.

    \b
    Example: storelab datasets fetch debian-closures && storelab layers simulate build/datasets/debian-closures
    """
    roots = list(root) or None  # click gives a tuple
    from storelab.layers import ALGORITHMS, load_images, simulate_pulls

    algorithms = [a.strip() for a in algorithm.split(",") if a.strip()]
    for name in algorithms:
        if name not in ALGORITHMS:
            raise ConfigError(f"unknown layering algorithm {name!r} (one of {', '.join(ALGORITHMS)})")
    from storelab.layers import graphs_from_dataset
    from storelab.tables.layout import may_hold_dataset

    graphs = graphs_from_dataset(images, roots) if may_hold_dataset(images) else load_images(images)
    default_pop = Path(images) / "popularity.json"
    pop_file = popularity or (str(default_pop) if default_pop.exists() else None)
    pulls = simulate_pulls(graphs, algorithms, budget, _popularity(pop_file))
    if out_dir:
        from storelab.layers.simulate import write_pulls

        write_pulls(pulls, out_dir)
    if as_json:
        print_json(jsonable(pulls.to_dict("records")))
        return
    shown = table(
        title=f"pulling {len(graphs)} images from {images} (budget {budget}, popularity: {pop_file or 'none'})", title_justify="left"
    )
    for col in ("algorithm", "image", "layers", "reused", "pulled", "reused bytes", "byte hit", "registry"):
        shown.add_column(col, justify="left" if col in ("algorithm", "image") else "right")
    for name in algorithms:
        runs = pulls[pulls.algorithm == name]
        for row in runs.itertuples():
            shown.add_row(
                name if row.step == 0 else "", row.image, str(row.layers), str(row.layers_reused), fmt_size(row.bytes_pulled),
                fmt_size(row.bytes_reused), fmt_pct(row.byte_hit_rate), fmt_size(row.cache_bytes),
            )  # fmt: skip
        pulled, image_bytes = int(runs.bytes_pulled.sum()), int(runs.image_bytes.sum())
        shown.add_row(
            "", "[bold]total[/]", str(int(runs.layers.sum())), str(int(runs.layers_reused.sum())), fmt_size(pulled),
            fmt_size(image_bytes - pulled), fmt_pct(1 - pulled / image_bytes if image_bytes else 0), fmt_size(runs.cache_bytes.iloc[-1]),
            end_section=True,
        )  # fmt: skip
    out().print(shown)
