"""Broken transformers Depth Anything folders (the files users download): each fault is an
InputError naming the file and the key, never a KeyError or a safetensors traceback."""

from __future__ import annotations

import shutil

import pytest

import fault_corpus as fc
from depthsmith.errors import InputError
from depthsmith.models import load_model

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    return fc.tiny_hf_folder(tmp_path_factory.mktemp("hf") / "depth-anything-tiny")


def test_the_clean_folder_loads(hf_folder):
    assert load_model(hf_folder).max_depth == 20


@pytest.mark.parametrize("case", sorted(fc.HF_CASES))
def test_broken_transformers_folder_is_named(hf_folder, tmp_path, case):
    fault, file, text = fc.HF_CASES[case]
    folder = shutil.copytree(hf_folder, tmp_path / case)
    fault(folder)
    with pytest.raises(InputError) as err:
        load_model(folder)
    message = str(err.value)
    assert str(folder / file) in message and text in message, message
