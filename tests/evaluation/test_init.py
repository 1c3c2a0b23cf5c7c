"""The package exports every public name; the torch-based autoencoder names load lazily but resolve."""

from __future__ import annotations

import pytest

import mmgt.evaluation as evaluation
from mmgt.evaluation import pose_autoencoder


def test_every_exported_name_resolves():
    for name in evaluation.__all__:
        assert getattr(evaluation, name) is not None, name


def test_lazy_names_are_the_module_objects():
    assert evaluation.fgd is pose_autoencoder.fgd
    assert evaluation.PoseAutoencoder is pose_autoencoder.PoseAutoencoder


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_metric"):
        evaluation.no_such_metric  # noqa: B018
