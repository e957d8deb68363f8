from __future__ import annotations

import socket

import pytest

from infinity_train.text import TextEncoder


def _refuse_network(*args: object, **kwargs: object) -> None:
    raise RuntimeError("test attempted network access")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any DNS lookup or socket connection fails loudly instead of hanging."""
    monkeypatch.setattr(socket, "getaddrinfo", _refuse_network)
    monkeypatch.setattr(socket, "create_connection", _refuse_network)
    monkeypatch.setattr(socket.socket, "connect", _refuse_network)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """Point the Hugging Face cache at an empty directory so no name is cached."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def minilm() -> TextEncoder:
    return TextEncoder.from_config("minilm")


@pytest.fixture(scope="session")
def tiny_t5() -> TextEncoder:
    return TextEncoder.from_config("tiny-t5", seed=0)
