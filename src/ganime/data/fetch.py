"""Download known data sets with their official clients (optional extras); clear help when that cannot work."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ganime.errors import DataError, MissingDependencyError

log = logging.getLogger(__name__)

KNOWN = {
    "anime-faces": "soumikrakshit/anime-faces",  # 21,551 faces, 64x64 PNG, images under data/
}

MANUAL_HELP = (
    "Set up Kaggle credentials: create an API token on kaggle.com (Account -> Create New Token) and save it "
    "as ~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY. Or download "
    "https://www.kaggle.com/datasets/{slug} by hand and train with --data PATH/TO/archive.zip (or the unzipped "
    "folder): ganime reads folders, .zip and .tar directly."
)


def _has_credentials() -> bool:
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return True
    cfg_dir = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    return (cfg_dir / "kaggle.json").is_file()


def fetch(name: str, dest: str | Path) -> Path:
    """Download data set `name` into `dest` with the official `kaggle` client; returns the folder."""
    if name not in KNOWN:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(sorted(KNOWN))}")
    slug = KNOWN[name]
    help_text = MANUAL_HELP.format(slug=slug)
    if not _has_credentials():
        raise DataError(f"no Kaggle credentials found. {help_text}")
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise MissingDependencyError(f"the kaggle client is not installed: pip install 'ganime[kaggle]'. {help_text}") from None
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        api = KaggleApi()
        api.authenticate()
        api.dataset_download_files(slug, path=str(dest), unzip=True, quiet=False)
    except Exception as e:  # noqa: BLE001 - the client raises many network/auth types
        raise DataError(f"downloading {slug} failed ({type(e).__name__}: {str(e)[:200]}). {help_text}") from None
    log.info("downloaded %s into %s; train with: ganime train --data %s", slug, dest, dest)
    return dest
