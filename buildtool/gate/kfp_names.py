"""The names kfp 1.8 gives a step function's component, which is how a compiled template is recognised."""

from __future__ import annotations

import re


def component_name(step: str) -> str:
    """kfp's `_python_function_name_to_component_name`: `train_model` -> `Train model`."""
    spaced = re.sub(" +", " ", step.replace("_", " ")).strip(" ")
    return spaced[:1].upper() + spaced[1:]
