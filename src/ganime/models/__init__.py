"""Generator/discriminator architectures, looked up by name in REGISTRY."""

from ganime.models import dcgan, fastgan, grown  # noqa: F401  (register "dcgan", "fastgan", "grown")
from ganime.models.registry import REGISTRY, build_discriminator, build_generator, register

__all__ = ["REGISTRY", "build_discriminator", "build_generator", "register"]
