"""Fixtures of the data tests. cache_world (the module beside this file) holds the helpers."""

import pytest
from cache_world import CacheWorld, build_cache_world


@pytest.fixture(scope="session")
def cache_world(tmp_path_factory) -> CacheWorld:
    return build_cache_world(tmp_path_factory.mktemp("cache_world"))
