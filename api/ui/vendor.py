"""The dashboard's vendored JavaScript: pinned files from the npm registry, with hashes.

``static/vendor/manifest.json`` lists each library: npm name, version, the file taken from its
tarball, the name it is served under, the tarball's npm ``integrity`` and the file's sha256.
``python -m api.ui.vendor`` (``scripts/vendor-ui``) downloads each pinned version again,
verifies the tarball against the registry's integrity, and rewrites file and hash;
``--latest`` moves every library to the registry's latest version; ``--check`` only verifies
the files on disk against the manifest (no network). Node.js is never needed.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

VENDOR = Path(__file__).parent / "static" / "vendor"
MANIFEST = VENDOR / "manifest.json"
REGISTRY = "https://registry.npmjs.org"


@dataclass(frozen=True)
class Library:
    """One vendored file of one npm package."""

    package: str
    version: str
    #: The path inside the package's tarball (under ``package/``).
    source: str
    #: The name it is served under in ``static/vendor`` (the version in it, so caches stay right).
    file: str
    license_file: str
    integrity: str
    sha256: str


class VendorError(Exception):
    """A download that does not match what the registry promised, or a file that changed."""


def load_manifest(path: Path = MANIFEST) -> list[Library]:
    raw: dict[str, Any] = json.loads(path.read_text("utf-8"))
    return [Library(**entry) for entry in raw["libraries"]]


def save_manifest(libraries: list[Library], path: Path = MANIFEST) -> None:
    doc = {
        "note": "Written by scripts/vendor-ui; do not edit the files it lists by hand.",
        "libraries": [asdict(lib) for lib in libraries],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", "utf-8")


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(libraries: list[Library], root: Path = VENDOR) -> list[str]:
    """What differs between the files on disk and the manifest (empty: all as recorded)."""
    problems = []
    for lib in libraries:
        path = root / lib.file
        if not path.exists():
            problems.append(f"{lib.file}: missing")
        elif sha256_of(path.read_bytes()) != lib.sha256:
            problems.append(f"{lib.file}: sha256 differs from the manifest ({lib.package})")
    return problems


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as answer:
        data: bytes = answer.read()
        return data


def _metadata(package: str, version: str) -> dict[str, Any]:
    name = urllib.parse.quote(package, safe="@")
    doc: dict[str, Any] = json.loads(_get(f"{REGISTRY}/{name.replace('/', '%2f')}/{version}"))
    return doc


def _verify(tarball: bytes, integrity: str) -> None:
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, tarball).digest()).decode()
    if digest != expected:
        raise VendorError(f"tarball does not match the registry's integrity {integrity}")


def _member(tarball: bytes, path: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile(f"package/{path}")
        if member is None:
            raise VendorError(f"no {path} in the tarball")
        return member.read()


def refresh(lib: Library, latest: bool, root: Path = VENDOR) -> Library:
    """Download the library again (its pinned version, or the latest) and write its file."""
    meta = _metadata(lib.package, "latest" if latest else lib.version)
    version = str(meta["version"])
    tarball = _get(meta["dist"]["tarball"])
    integrity = str(meta["dist"]["integrity"])
    _verify(tarball, integrity)
    data = _member(tarball, lib.source)
    stem = lib.file.replace(lib.version, version)
    if stem != lib.file:
        (root / lib.file).unlink(missing_ok=True)
    (root / stem).write_bytes(data)
    (root / lib.license_file).write_bytes(_member(tarball, "LICENSE"))
    return replace(lib, version=version, file=stem, integrity=integrity, sha256=sha256_of(data))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/vendor-ui", description=__doc__)
    parser.add_argument("--check", action="store_true", help="verify the files, no download")
    parser.add_argument("--latest", action="store_true", help="move to the latest versions")
    args = parser.parse_args(argv)
    libraries = load_manifest()
    if args.check:
        problems = check(libraries)
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    fresh = [refresh(lib, args.latest) for lib in libraries]
    save_manifest(fresh)
    for old, new in zip(libraries, fresh, strict=True):
        print(f"{new.package} {old.version} -> {new.version}  {new.file}  sha256 {new.sha256}")
    print("update the import in api/ui/static/js/ if a file name changed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
