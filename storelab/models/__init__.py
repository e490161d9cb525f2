"""Store models: what snix, attic, nix-casync, ncps, restic, borg and a plain binary cache would
each store for the same snapshots (:data:`MODELS`, :func:`compare_models`).

>>> sorted(MODELS)[:3]
['attic', 'borg', 'hestia']
"""

from __future__ import annotations

from storelab.models.compare import COMPARE_COLUMNS, compare_models, model_objects, pareto_front
from storelab.models.recipes import MODELS, StoreModel, model_chunkings

__all__ = ["COMPARE_COLUMNS", "MODELS", "StoreModel", "compare_models", "model_chunkings", "model_objects", "pareto_front"]
