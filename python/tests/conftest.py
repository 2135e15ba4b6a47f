import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def models_dir() -> pathlib.Path:
    """$KVC_MODELS_DIR, else the shared models folder next to the repository."""
    return pathlib.Path(os.environ.get("KVC_MODELS_DIR", REPO.parent / "shared" / "models"))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
