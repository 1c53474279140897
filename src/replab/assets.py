"""Third-party files the reports inline, fetched once at setup (like a dependency), never committed.

MathJax 3.2.2 (Apache-2.0) from the npm registry, verified against its published sha512 integrity.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

MATHJAX_VERSION = "3.2.2"
MATHJAX_URL = f"https://registry.npmjs.org/mathjax/-/mathjax-{MATHJAX_VERSION}.tgz"
MATHJAX_SHA512 = "Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
MATHJAX_MEMBER = "package/es5/tex-svg-full.js"  # self-contained: SVG output needs no fonts


def asset_dir() -> Path:
    """Inside the environment (like installed packages); ``REPLAB_ASSETS`` overrides."""
    return Path(os.environ.get("REPLAB_ASSETS", Path(sys.prefix) / "share" / "replab"))


def mathjax_dir() -> Path:
    return asset_dir() / f"mathjax-{MATHJAX_VERSION}"


def mathjax_path() -> Path:
    path = mathjax_dir() / "tex-svg-full.js"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `replab assets fetch` (part of `make setup`)")
    return path


def fetch(force: bool = False) -> Path:
    target = mathjax_dir() / "tex-svg-full.js"
    if target.exists() and not force:
        return target
    with urllib.request.urlopen(MATHJAX_URL, timeout=120) as response:
        payload = response.read()
    digest = base64.b64encode(hashlib.sha512(payload).digest()).decode()
    if digest != MATHJAX_SHA512:
        raise RuntimeError(f"{MATHJAX_URL}: sha512 {digest} does not match the pinned {MATHJAX_SHA512}")
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        member = tar.extractfile(MATHJAX_MEMBER)
        if member is None:
            raise RuntimeError(f"{MATHJAX_MEMBER} not found in {MATHJAX_URL}")
        content = member.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".part")
    tmp.write_bytes(content)
    tmp.replace(target)
    return target
