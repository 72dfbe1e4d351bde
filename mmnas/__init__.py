"""mmnas: Deep Multimodal Neural Architecture Search (Yu et al., ACM MM 2020), reimplemented.

Public API: `build_network`, `build_supernet`, `load_release_state_dict`, `Genotype`, `load_genotype`,
`ModelConfig`. Imported lazily so that light entry points (the VQA scorer) do not pay for torch."""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "build_network": "mmnas.models.build",
    "build_supernet": "mmnas.models.build",
    "load_release_state_dict": "mmnas.models.release",
    "ModelConfig": "mmnas.models.model_config",
    "Genotype": "mmnas.nas.genotype",
    "load_genotype": "mmnas.nas.genotype",
    "ArchFileError": "mmnas.nas.genotype",
}
__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'mmnas' has no attribute {name!r}")
