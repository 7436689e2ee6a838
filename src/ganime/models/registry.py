"""Models by name: each architecture registers a (Generator, Discriminator) pair built from ModelConfig."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ganime.config import ModelConfig
from ganime.errors import ConfigError


@dataclass(frozen=True)
class Architecture:
    """Builders for one architecture's G and D."""

    generator: Callable[[ModelConfig], nn.Module]
    discriminator: Callable[[ModelConfig], nn.Module]


REGISTRY: dict[str, Architecture] = {}


def register(name: str, generator: Callable[[ModelConfig], nn.Module], discriminator: Callable) -> None:
    """Add an architecture under `name` (import-time registry)."""
    REGISTRY[name] = Architecture(generator, discriminator)


def _get(name: str) -> Architecture:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def build_generator(cfg: ModelConfig) -> nn.Module:
    """G for `cfg`, freshly initialised on the CPU."""
    return _get(cfg.arch).generator(cfg)


def build_discriminator(cfg: ModelConfig) -> nn.Module:
    """D for `cfg`, freshly initialised on the CPU."""
    return _get(cfg.arch).discriminator(cfg)
