"""The embedded local two-region world used by ``dr demo``, ``dr world`` and the tests."""

from dr_engine.world.core import DEFAULT_ROOT, World, WorldConfig, WorldEndpoints, WorldError, WorldExtraMissing

__all__ = ["DEFAULT_ROOT", "World", "WorldConfig", "WorldEndpoints", "WorldError", "WorldExtraMissing"]
