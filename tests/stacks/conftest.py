"""Shared fixtures for the stack tests, and the guard that keeps locust out of this pytest process.

Locust monkey-patches the interpreter with gevent, after which Pulumi's mocks hang: the Makefile runs
tests/stacks in a pytest process of its own, and this guard fails loudly if locust got in anyway.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.stacks.stack_fixtures import assert_no_locust, stack_values


@pytest.fixture(autouse=True)
def _no_locust_in_this_process() -> Iterator[None]:
    assert_no_locust()
    yield


@pytest.fixture
def dev_values() -> dict[str, Any]:
    return stack_values("dev")


@pytest.fixture
def prod_values() -> dict[str, Any]:
    return stack_values("prod-gra11")
