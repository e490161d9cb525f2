"""Layering on small graphs whose answers are worked out by hand, the pull simulation's exact
bytes, the input formats, and Debian closures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storelab.cli import main
from storelab.datasets.debian_closures import build_closures, parse_index
from storelab.errors import ConfigError, InputError
from storelab.layers import (
    ClosureGraph,
    StorePath,
    load_graph,
    parse_graph,
    plan_layers,
    simulate_pulls,
)
from storelab.layers.plan import layer_identity
from tests.helpers import snapshot_rows

S = "/nix/store/"


def p(name: str) -> str:
    return f"{S}{'0' * 32}-{name}"


def graph(nodes: dict[str, tuple[int, list[str]]], tops: list[str] | None = None, name: str = "img") -> ClosureGraph:
    return ClosureGraph.build(
        [StorePath(p(n), size, tuple(p(r) for r in refs)) for n, (size, refs) in nodes.items()],
        [p(t) for t in tops] if tops is not None else None,
        name,
    )


def members(plan) -> list[set[str]]:
    return [{m[len(S) + 33 :] for m in layer.members} for layer in plan.layers if layer.kind == "paths"]


# -- popularity (Nixery) -------------------------------------------------------------------

APP = {"app": (10, ["libx", "liby"]), "libx": (20, ["libc"]), "liby": (30, ["libc"]), "libc": (100, [])}


def test_popularity_dominator_layers_and_ratings() -> None:
    # libc is popular (200 ≥ 100): an edge from the root makes it a layer of its own; app
    # dominates libx and liby. Closure sizes: app 160, libx 120, liby 130, libc 100.
    plan = plan_layers(graph(APP), "popularity", budget=94, popularity={"libc": 200})
    assert members(plan) == [{"app", "libx", "liby"}, {"libc"}]
    assert [layer.rating for layer in plan.layers[:2]] == [1 * (160 + 120 + 130), 200 * 100]
    assert [layer.nar_size for layer in plan.layers[:2]] == [60, 100]  # layer bytes: NAR sizes
    assert plan.layers[-1].kind == "symlinks" and len(plan.layers) == 3
    merged = plan_layers(graph(APP), "popularity", budget=1, popularity={"libc": 200})
    assert members(merged) == [{"app", "libx", "liby", "libc"}]
    assert merged.layers[0].rating == 410 + 20000
    assert merged.layers[0].identity == layer_identity(sorted(p(n) for n in APP))


def test_popularity_diamond_is_one_layer_unless_the_shared_path_is_popular() -> None:
    diamond = {"t": (1, ["a", "b"]), "a": (2, ["d"]), "b": (3, ["d"]), "d": (4, [])}
    assert members(plan_layers(graph(diamond), "popularity")) == [{"t", "a", "b", "d"}]
    split = plan_layers(graph(diamond), "popularity", popularity={"d": 100})
    # ratings: t-layer 1 × (10 + 6 + 7) = 23; d-layer 100 × 4 = 400
    assert members(split) == [{"t", "a", "b"}, {"d"}]


def test_popularity_merges_the_lowest_and_does_not_resort() -> None:
    # four top-level paths, ratings 1, 2, 3, 4 (popularity 1, no references)
    tops = {"p": (1, []), "q": (2, []), "r": (3, []), "s": (4, [])}
    plan = plan_layers(graph(tops), "popularity", budget=2)
    # p+q (rating 3) stays first; then it is folded with r (3) → pqr (6) ahead of s (4), as Nixery leaves it
    assert members(plan) == [{"p", "q", "r"}, {"s"}]
    assert [layer.rating for layer in plan.layers[:2]] == [6, 4]


def test_popularity_ties_are_broken_by_member_paths() -> None:
    tied = {"y": (10, []), "x": (10, [])}
    assert members(plan_layers(graph(tied), "popularity")) == [{"x"}, {"y"}]
    assert members(plan_layers(graph(tied), "popularity", budget=1)) == [{"x", "y"}]


def test_forced_and_big_paths_get_their_own_layers() -> None:
    nodes = {
        "app": (1, ["nss-cacert-3.101", "huge"]),
        "nss-cacert-3.101": (5, []),
        "huge": (50_000_000, ["blob"]),
        "blob": (60_000_000, []),
    }
    plan = plan_layers(graph(nodes), "popularity")
    # huge's closure is 110 MB > 100 MB and the CA certificates are forced popular: both get
    # edges from the root; blob (60 MB) stays under huge. Ratings: certs 500000 × 5,
    # app 1 × (1 + 5 + 110 MB), huge+blob 1 × (110 MB + 60 MB): ascending in that order.
    assert members(plan) == [{"nss-cacert-3.101"}, {"app"}, {"huge", "blob"}]
    assert [layer.rating for layer in plan.layers[:3]] == [2_500_000, 110_000_006, 170_000_000]


# -- size-first (nixpkgs auto-layer) -------------------------------------------------------

SIZES = {"app": (1, ["big", "tool"]), "big": (100, ["libc"]), "tool": (30, ["libc"]), "libc": (50, [])}


def test_size_first_by_hand() -> None:
    # primaries by size: big, libc, tool, app. After big: {big, libc} | {tool, app};
    # after libc: {big} {libc} {tool, app}; after tool: 4 labels; after app: 4.
    assert sorted(map(sorted, members(plan_layers(graph(SIZES), "size-first", budget=2)))) == [["app", "tool"], ["big", "libc"]]
    assert sorted(map(sorted, members(plan_layers(graph(SIZES), "size-first", budget=3)))) == [["app", "tool"], ["big"], ["libc"]]
    assert sorted(map(sorted, members(plan_layers(graph(SIZES), "size-first", budget=94)))) == [["app"], ["big"], ["libc"], ["tool"]]
    # layers come in order of their closure size: libc (50) before big (150)
    assert members(plan_layers(graph(SIZES), "size-first", budget=3))[0] == {"libc"}


def test_size_first_keeps_shared_dependencies_apart() -> None:
    # two large roots sharing a dependency: the shared one gets its own layer
    shared = {"a": (100, ["s"]), "b": (90, ["s"]), "s": (10, [])}
    assert sorted(map(sorted, members(plan_layers(graph(shared), "size-first")))) == [["a"], ["b"], ["s"]]


# -- per-path, single ----------------------------------------------------------------------


def test_per_path_and_single() -> None:
    assert members(plan_layers(graph(SIZES), "per-path", budget=2)) == [{"big"}, {"libc", "tool", "app"}]
    assert members(plan_layers(graph(SIZES), "per-path", budget=4)) == [{"big"}, {"libc"}, {"tool"}, {"app"}]
    assert members(plan_layers(graph(SIZES), "single")) == [{"big", "libc", "tool", "app"}]
    with pytest.raises(ConfigError):
        plan_layers(graph(SIZES), "alphabetical")
    with pytest.raises(ConfigError):
        plan_layers(graph(SIZES), "single", budget=0)


# -- the pull simulation: exact bytes --------------------------------------------------------


def test_simulation_bytes_by_hand() -> None:
    first = graph(SIZES, name="first")
    second = graph({"app2": (2, ["big"]), "big": (100, ["libc"]), "libc": (50, [])}, name="second")
    rows = simulate_pulls([first, second], ["per-path", "single"]).set_index(["algorithm", "image"])
    per = rows.loc["per-path"]
    assert (per.loc["first", "bytes_pulled"], per.loc["first", "bytes_reused"]) == (181, 0)
    assert (per.loc["second", "bytes_pulled"], per.loc["second", "bytes_reused"]) == (2, 150)
    assert (per.loc["second", "layers_reused"], per.loc["second", "layers_pulled"]) == (2, 2)  # app2 and its symlink farm
    assert per.loc["second", "cache_bytes"] == 183
    assert per.loc["second", "byte_hit_rate"] == pytest.approx(150 / 152)
    single = rows.loc["single"]
    assert list(single.bytes_pulled) == [181, 152] and list(single.bytes_reused) == [0, 0]
    assert single.loc["second", "cache_bytes"] == 333


# -- input formats -------------------------------------------------------------------------


def test_graph_formats(tmp_path: Path) -> None:
    entries = [
        {"path": p("app"), "narSize": 10, "references": [p("app"), p("lib")], "closureSize": 15},
        {"path": p("lib"), "narSize": 5, "references": []},
    ]
    export = {"exportReferencesGraph": {"closure": [p("app")]}, "graph": entries}
    old_path_info = entries
    new_path_info = {e["path"]: {k: v for k, v in e.items() if k != "path"} for e in entries}
    for document in (export, old_path_info, new_path_info):
        g = parse_graph(document, "x")
        assert g.top_level == (p("app"),)
        assert g.paths[p("app")].references == (p("lib"),)  # the self reference is dropped
        assert g.closure_size(p("app")) == 15
    (tmp_path / "bad.json").write_text('{"graph": [{"path": "/nix/store/a", "narSize": 1, "references": ["/nix/store/zz"]}]}')
    with pytest.raises(InputError, match="not in the graph"):
        load_graph(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{nope")
    with pytest.raises(InputError, match="not JSON"):
        load_graph(tmp_path / "junk.json")


def test_layers_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for name, nodes in (("1-first", SIZES), ("2-second", {"app2": (2, ["big"]), "big": (100, ["libc"]), "libc": (50, [])})):
        entries = [{"path": p(n), "narSize": s, "references": [p(r) for r in refs]} for n, (s, refs) in nodes.items()]
        (images / f"{name}.json").write_text(json.dumps(entries))
    (images / "popularity.json").write_text(json.dumps({"libc": 500}))
    assert main(["layers", "plan", str(images / "1-first.json"), "--algorithm", "size-first", "--budget", "2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert [len(layer["members"]) for layer in plan["layers"]] == [2, 2, 0]
    assert main(["layers", "plan", str(images / "1-first.json")]) == 0
    assert "symlink farm" in capsys.readouterr().out
    assert main(["layers", "simulate", str(images), "-a", "per-path,popularity", "-o", str(tmp_path / "out"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["algorithm"], r["image"], r["bytes_pulled"]) for r in rows][:2] == [("per-path", "1-first", 181), ("per-path", "2-second", 2)]
    assert (tmp_path / "out" / "pulls.parquet").exists()
    assert main(["layers", "simulate", str(images)]) == 0
    assert "popularity.json" in capsys.readouterr().out  # found beside the images
    assert main(["layers", "plan", str(tmp_path / "missing.json")]) == 1
    assert main(["layers", "simulate", str(images), "-a", "random"]) == 2


# -- Debian closures -----------------------------------------------------------------------

INDEX = """\
Package: app
Version: 1.0
Installed-Size: 10
Depends: libc6 (>= 2.36), mail-transport-agent | nothing-real, libfoo:any

Package: libc6
Version: 2.36-9
Installed-Size: 12000
Depends: libgcc-s1

Package: libc6
Version: 2.36-9+deb12u4
Installed-Size: 12001
Depends: libgcc-s1

Package: libgcc-s1
Version: 12.2.0-14
Installed-Size: 140
Depends: libc6

Package: libfoo
Version: 3
Installed-Size: 1

Package: postfix
Version: 3.7
Installed-Size: 4000
Provides: mail-transport-agent
Depends: libc6

Package: exim4
Version: 4.96
Installed-Size: 3000
Provides: mail-transport-agent
"""


def test_debian_closures_from_an_index() -> None:
    packages = parse_index(INDEX)
    assert packages["libc6"].version == "2.36-9+deb12u4"  # the highest version wins
    documents, popularity = build_closures(packages, ["app"])
    graph_doc = documents["app"]
    names = {e["debian"]["package"] for e in graph_doc["graph"]}
    # a virtual package resolves to its first provider by name: exim4
    assert names == {"app", "libc6", "libgcc-s1", "libfoo", "exim4"}
    sizes = {e["debian"]["package"]: e["narSize"] for e in graph_doc["graph"]}
    assert sizes["libc6"] == 12001 * 1024
    g = parse_graph(graph_doc, "app")
    assert g.top_level == (packages["app"].store_path,)
    assert g.closure_size(packages["libc6"].store_path) == (12001 + 140) * 1024  # the libc6 ↔ libgcc-s1 cycle
    # libc6 is depended on by app, libgcc-s1 and postfix
    assert popularity[packages["libc6"].store_path.split("-", 1)[1]] == 3


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="apt-cache (Debian's package index) is not on this machine")
def test_fetch_debian_closures_for_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datasets", "fetch", "debian-closures", "--to", str(tmp_path / "deb")]) == 0
    manifest = json.loads((tmp_path / "deb" / "manifest.json").read_text())
    assert manifest["packages_in_index"] > 1000
    assert [i["label"] for i in manifest["files"]][:3] == ["python3", "perl", "gcc"]
    python = load_graph(tmp_path / "deb" / manifest["files"][0]["file"])
    assert len(python.paths) == manifest["files"][0]["paths"] > 5
    assert any("libc6-" in path for path in python.paths)
    capsys.readouterr()
    assert main(["layers", "simulate", str(tmp_path / "deb"), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 * len(manifest["files"])
    assert all(r["bytes_pulled"] + r["bytes_reused"] == r["image_bytes"] for r in rows)
    assert main(["datasets", "fetch", "nonsense"]) == 2


# -- closures from a dataset of NARs ingested with their narinfo -----------------------------


def _nar_with_narinfo(folder: Path, name: str, content: bytes, refs: list[str]) -> tuple[Path, Path]:
    import hashlib

    from storelab.nar import nar_bytes_of_file, nix_base32

    nar = nar_bytes_of_file(content)
    path = folder / f"{name}.nar"
    path.write_bytes(nar)
    info = folder / f"{name}.narinfo"
    info.write_text(
        f"StorePath: {p(name)}\nURL: nar/{name}.nar\nNarHash: sha256:{nix_base32(hashlib.sha256(nar).digest())}\n"
        f"NarSize: {len(nar)}\nReferences: {' '.join(p(r).rsplit('/', 1)[1] for r in [name, *refs])}\n"
    )
    return path, info


def test_closures_from_a_dataset_of_nars(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds = tmp_path / "ds"
    sizes = {}
    for name, content, refs in (("libc", b"c" * 5000, []), ("lib", b"l" * 300, ["libc"]), ("app", b"a" * 100, ["lib", "libc"]), ("app2", b"b" * 50, ["libc"])):
        nar, info = _nar_with_narinfo(tmp_path, name, content, refs)
        assert main(["ingest-nar", str(nar), "--narinfo", str(info), "-o", str(ds), "-q"]) == 0
        sizes[name] = nar.stat().st_size
    row = next(r for r in snapshot_rows(ds, "snapshots") if r["label"] == "app.nar")
    assert row["store_path"] == p("app") and sorted(row["references"]) == [p("lib"), p("libc")]
    assert main(["layers", "plan", str(ds), "--root", "app.nar", "--algorithm", "per-path", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert sorted(layer["nar_size"] for layer in plan["layers"] if layer["members"]) == sorted([sizes["app"], sizes["lib"], sizes["libc"]])
    assert main(["layers", "simulate", str(ds), "--root", "app.nar", "--root", p("app2"), "-a", "per-path", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["bytes_pulled"] for r in rows] == [sizes["app"] + sizes["lib"] + sizes["libc"], sizes["app2"]]


def test_narinfo_must_match_the_nar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nar, info = _nar_with_narinfo(tmp_path, "x", b"x" * 10, [])
    info.write_text(info.read_text().replace("NarSize: ", "NarSize: 1"))
    assert main(["ingest-nar", str(nar), "--narinfo", str(info), "-o", str(tmp_path / "ds")]) == 1
    assert "the narinfo says NarSize" in capsys.readouterr().err
    assert main(["ingest-nar", str(nar), str(nar), "--narinfo", str(info), "-o", str(tmp_path / "ds")]) == 2
    assert main(["layers", "plan", str(tmp_path)]) == 1  # a folder that is no dataset of NARs


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40).flatmap(lambda n: st.tuples(
    st.just(n),
    st.lists(st.integers(1, 10**6), min_size=n, max_size=n),
    st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=3 * n),
)))  # fmt: skip
def test_closure_sizes_equal_walking_every_closure(case: tuple[int, list[int], list[tuple[int, int]]]) -> None:
    """The one-pass closure sizes (bitsets, dependency loops sharing one) equal the sum over
    each path's closure found by walking it — on random graphs, loops included."""
    n, sizes, edges = case
    refs: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in edges:
        if a != b:
            refs[a].add(b)
    name = [f"/nix/store/{i:032d}-p{i}" for i in range(n)]
    graph = ClosureGraph.build(StorePath(name[i], sizes[i], tuple(name[j] for j in sorted(refs[i]))) for i in range(n))
    for i in range(n):
        assert graph.closure_size(name[i]) == sum(graph.paths[p].nar_size for p in graph.closure(name[i]))


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 30).flatmap(lambda n: st.tuples(st.just(n), st.lists(st.tuples(st.integers(0, n), st.integers(1, n)), max_size=4 * n))))
def test_dominators_equal_networkx(case: tuple[int, list[tuple[int, int]]]) -> None:
    """The popularity algorithm's own dominator tree is networkx's (the tree is unique)."""
    import networkx as nx

    from storelab.layers.plan import _immediate_dominators, _reverse_postorder

    n, edges = case
    successors: list[list[int]] = [[] for _ in range(n + 1)]
    for a, b in edges:
        if b not in successors[a]:
            successors[a].append(b)
    graph = nx.DiGraph()
    graph.add_node(0)
    graph.add_edges_from((a, b) for a in range(n + 1) for b in successors[a])
    expected = {node: parent for node, parent in nx.immediate_dominators(graph, 0).items() if node != 0}
    ours = {node: parent for node, parent in _immediate_dominators(successors, _reverse_postorder(successors)).items() if node != 0}
    assert ours == expected  # (networkx versions differ on listing the root itself)
