"""Container layer study: group an image's store paths into layers (Nixery's popularity
algorithm, nixpkgs' size-first auto-layer, one layer per path, a single layer) and simulate
pulling a sequence of images through a layer cache."""

from storelab.layers.graph import (
    ClosureGraph,
    StorePath,
    graphs_from_dataset,
    load_graph,
    parse_graph,
    path_name,
)
from storelab.layers.plan import ALGORITHMS, Layer, LayerPlan, plan_layers
from storelab.layers.simulate import load_images, load_popularity, simulate_pulls

__all__ = [
    "ALGORITHMS",
    "ClosureGraph",
    "Layer",
    "LayerPlan",
    "StorePath",
    "graphs_from_dataset",
    "load_graph",
    "load_images",
    "load_popularity",
    "parse_graph",
    "path_name",
    "plan_layers",
    "simulate_pulls",
]
