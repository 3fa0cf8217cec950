"""Shared fixtures: a tiny random LLaVA (built from configs, no download) and a test image."""

import numpy as np
import pytest
from PIL import Image

from tests.installed import installed, wheel  # noqa: F401  (session fixtures: the built wheel, installed in a venv)
from tests.tiny_llava import tiny_llava


@pytest.fixture(scope="session")
def tiny_bundle():
    return tiny_llava()


@pytest.fixture(scope="session")
def noise_image():
    return Image.fromarray((np.random.RandomState(0).rand(40, 50, 3) * 255).astype("uint8"))
