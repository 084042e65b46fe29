"""The package's build backend (PEP 517 and PEP 660), written with the standard library only.

Why not setuptools: before setuptools 70.1, building a wheel (even just its metadata) needs the separate ``wheel``
package (``invalid command 'bdist_wheel'``), which Debian's python3 does not ship and an offline machine cannot fetch.
This backend needs nothing: it reads ``[project]`` of pyproject.toml and zips ``src/limitrail_token_broker`` into a
pure-Python wheel (``py3-none-any``), byte for byte the same on every run (fixed file times and order).

Build the wheel with no pip at all (what CI keeps as an artifact)::

    python3 clients/python/build_backend.py            # -> clients/python/dist/limitrail_token_broker-<v>-py3-none-any.whl

or let pip call this backend (``--no-build-isolation``: pip installs nothing to build)::

    python3 -m pip install --no-build-isolation --no-index --no-deps ./clients/python
    python3 -m pip wheel --no-build-isolation --no-index --no-deps -w clients/python/dist ./clients/python

Python 3.11+ reads pyproject.toml with its own ``tomllib``; older ones need ``tomli`` (pip installs it when it builds
in isolation, from ``build-system.requires``).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import io
import os
import re
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent
PACKAGE = "limitrail_token_broker"
TAG = "py3-none-any"
#: The [project] keys this backend writes into the metadata; any other key fails the build instead of being dropped.
KNOWN_KEYS = {"name", "version", "description", "readme", "requires-python", "license", "dependencies"}
#: Every file's time in the wheel and the sdist: fixed, so that the same sources make the same bytes.
FILE_TIME = (1980, 1, 1, 0, 0, 0)


def _project() -> Dict[str, object]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        project = tomllib.load(file)["project"]
    unknown = sorted(set(project) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"pyproject.toml [project] has keys build_backend.py does not write: {', '.join(unknown)}")
    for key in ("name", "version"):
        if not isinstance(project.get(key), str) or not project[key]:
            raise ValueError(f'pyproject.toml [project] "{key}" must be a non-empty string')
    return project


def _dist_name(project: Dict[str, object]) -> str:
    """The name as wheel and sdist file names spell it (PEP 427 / PEP 625): lower case, runs of -_. as one _."""
    return re.sub(r"[-_.]+", "_", str(project["name"])).lower()


def _metadata(project: Dict[str, object]) -> str:
    """Core metadata 2.1 (the METADATA of the wheel, the PKG-INFO of the sdist)."""
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
    ]
    if project.get("description"):
        lines.append(f"Summary: {project['description']}")
    license_ = project.get("license")
    if isinstance(license_, dict) and license_.get("text"):
        lines.append(f"License: {license_['text']}")
    if project.get("requires-python"):
        lines.append(f"Requires-Python: {project['requires-python']}")
    lines += [f"Requires-Dist: {requirement}" for requirement in project.get("dependencies", [])]  # type: ignore[union-attr]
    readme = project.get("readme")
    if readme is None:
        return "\n".join(lines) + "\n"
    if not isinstance(readme, str) or not readme.endswith(".md"):
        raise ValueError('pyproject.toml [project] "readme" must name a Markdown file')
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + (ROOT / readme).read_text(encoding="utf-8")


def _package_files() -> List[Tuple[str, bytes]]:
    """Every file of the package (sources and py.typed), without caches, as (path in the wheel, content), sorted."""
    files = []
    for path in sorted((ROOT / "src" / PACKAGE).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            files.append((path.relative_to(ROOT / "src").as_posix(), path.read_bytes()))
    return files


def _dist_info(project: Dict[str, object], names: List[Tuple[str, bytes]]) -> Tuple[str, List[Tuple[str, bytes]]]:
    """The .dist-info folder's name and files, RECORD (hashes of everything, itself unhashed) last."""
    folder = f"{_dist_name(project)}-{project['version']}.dist-info"
    wheel = f"Wheel-Version: 1.0\nGenerator: limitrail build_backend.py\nRoot-Is-Purelib: true\nTag: {TAG}\n"
    files = [(f"{folder}/METADATA", _metadata(project).encode("utf-8")), (f"{folder}/WHEEL", wheel.encode("utf-8"))]
    record = io.StringIO()
    for path, content in names + files:
        digest = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode("ascii")
        record.write(f"{path},sha256={digest},{len(content)}\n")
    record.write(f"{folder}/RECORD,,\n")
    return folder, files + [(f"{folder}/RECORD", record.getvalue().encode("utf-8"))]


def _write_wheel(directory: str, files: List[Tuple[str, bytes]], project: Dict[str, object]) -> str:
    name = f"{_dist_name(project)}-{project['version']}-{TAG}.whl"
    _, info = _dist_info(project, files)
    os.makedirs(directory, exist_ok=True)
    target = os.path.join(directory, name)
    with zipfile.ZipFile(target + ".part", "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for path, content in files + info:
            entry = zipfile.ZipInfo(path, date_time=FILE_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(entry, content)
    os.replace(target + ".part", target)
    return name


# --- PEP 517 hooks ---------------------------------------------------------------------------------------------


def get_requires_for_build_wheel(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_sdist(config_settings: Optional[dict] = None) -> List[str]:
    return []


def get_requires_for_build_editable(config_settings: Optional[dict] = None) -> List[str]:
    return []


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Optional[dict] = None) -> str:
    project = _project()
    folder, info = _dist_info(project, _package_files())
    for path, content in info:
        if not path.endswith("/RECORD"):
            target = Path(metadata_directory) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    return folder


prepare_metadata_for_build_editable = prepare_metadata_for_build_wheel


def build_wheel(
    wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None
) -> str:
    return _write_wheel(wheel_directory, _package_files(), _project())


def build_editable(
    wheel_directory: str, config_settings: Optional[dict] = None, metadata_directory: Optional[str] = None
) -> str:
    """PEP 660: a wheel holding only a .pth file that puts this checkout's src/ on sys.path."""
    pth = (str(ROOT / "src") + "\n").encode("utf-8")
    return _write_wheel(wheel_directory, [(f"__editable__.{PACKAGE}.pth", pth)], _project())


def build_sdist(sdist_directory: str, config_settings: Optional[dict] = None) -> str:
    project = _project()
    base = f"{_dist_name(project)}-{project['version']}"
    sources = [Path("pyproject.toml"), Path("build_backend.py"), Path(str(project.get("readme", "README.md")))]
    sources += sorted(p.relative_to(ROOT) for p in (ROOT / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    os.makedirs(sdist_directory, exist_ok=True)
    name = f"{base}.tar.gz"
    mtime = int(calendar.timegm(FILE_TIME + (0, 0, 0)))

    def add(tar: tarfile.TarFile, path: str, content: bytes) -> None:
        entry = tarfile.TarInfo(f"{base}/{path}")
        entry.size, entry.mtime, entry.mode = len(content), mtime, 0o644
        tar.addfile(entry, io.BytesIO(content))

    with tarfile.open(os.path.join(sdist_directory, name), "w:gz", format=tarfile.PAX_FORMAT) as tar:
        add(tar, "PKG-INFO", _metadata(project).encode("utf-8"))
        for source in sources:
            add(tar, source.as_posix(), (ROOT / source).read_bytes())
    return name


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "dist")
    if out in ("-h", "--help"):
        print("usage: python3 clients/python/build_backend.py [OUTPUT_DIR]   (default: clients/python/dist)")
        sys.exit(0)
    print(os.path.join(out, build_wheel(out)))
