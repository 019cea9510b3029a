"""Pausing the cyclic collector while runbooks load: nesting and restoring its state."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dr_engine.config.gcpause import gc_paused


@pytest.fixture
def gc_enabled() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


@pytest.mark.usefixtures("gc_enabled")
def test_pause_nests_and_restores_the_collector() -> None:
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause is still running
    assert gc.isenabled()


@pytest.mark.usefixtures("gc_enabled")
def test_pause_restores_the_collector_when_the_block_raises() -> None:
    with pytest.raises(ValueError), gc_paused():
        raise ValueError("boom")
    assert gc.isenabled()


@pytest.mark.usefixtures("gc_enabled")
def test_a_collector_disabled_on_purpose_stays_disabled() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()
