"""What the served page and the static site say about a generator, without the web stack (fastapi-free):
which generator to load, its short id, and the page's title and subtitle."""

from __future__ import annotations

import hashlib
import html
from pathlib import Path

from ganime import generate
from ganime.errors import ConfigError
from ganime.generate import LoadedGenerator, page_card

STATIC = Path(__file__).parent / "static"
MAX_SEED = 2**53 - 1  # the largest integer a browser's JSON/JavaScript number holds exactly


def resolve_generator(generator_path: str | Path | None) -> Path:
    """The given source, or the pretrained generator shipped with ganime (as `ganime generate` does)."""
    if generator_path is not None and (str(generator_path) != generate.PRETRAINED or Path(generator_path).exists()):
        return Path(generator_path)  # a local file or run named "pretrained" wins, as in load_generator
    path = generate.default_generator_path()  # looked up at call time (tests point it elsewhere)
    if path is None or not Path(path).exists():
        raise ConfigError(
            f"no generator given and the pretrained one ({generate.pretrained_path().name}) is not installed: "
            "pass RUN_OR_CHECKPOINT (a run dir from `ganime train`, a ckpt-* dir or a generator .safetensors)"
        )
    return Path(path)


def model_id(gen: LoadedGenerator) -> str:
    """A short hash of the generator's weights: gallery items remember which model made them."""
    h = hashlib.sha256()
    for name, t in sorted(gen.G.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def page_text(gen: LoadedGenerator) -> tuple[str, str]:
    """The page's title and subtitle for a generator: the one place to change them (served and static pages).
    They come from the model card (the shipped generator's) or name the data the run was trained on."""
    card = page_card(gen)
    subtitle = card["subtitle"] or "drawn by a GAN"
    return card["title"], f"{subtitle[0].upper()}{subtitle[1:]}. Each image comes from one number, its seed: same seed, same image."


def render_page(template: str, title: str, subtitle: str) -> str:
    return template.replace("{{title}}", html.escape(title)).replace("{{subtitle}}", html.escape(subtitle))
