"""Fixtures for the Kubernetes adapter tests: the stand-in API server and official clients aimed at it."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

# The stand-in lives beside these tests; make it importable as `k8s_standin` under importlib mode.
sys.path.insert(0, str(Path(__file__).parent))

from k8s_standin import TEST_TOKEN as TOKEN
from k8s_standin import StandInApiServer, running_standin


@pytest.fixture
def standin() -> Iterator[StandInApiServer]:
    with running_standin(token=TOKEN) as server:
        yield server


@pytest.fixture
def make_client(standin: StandInApiServer) -> Iterator[Callable[..., client.ApiClient]]:
    """A factory of official clients, one per simulated process (leader, follower, laptop); `name`
    becomes the client's User-Agent, so a stand-in hook can single out one of them."""
    made: list[client.ApiClient] = []

    def make(name: str = "swell-test") -> client.ApiClient:
        configuration = client.Configuration(host=standin.url, api_key={"BearerToken": TOKEN})
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        api = client.ApiClient(configuration)
        api.user_agent = name
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()
