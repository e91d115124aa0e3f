"""A copy of ``sam build``'s output whose native extensions run on this machine.

``sam build`` vendors Linux wheels for the functions' architecture (arm64: ``aarch64``
shared objects, such as cryptography's ``_rust.abi3.so``). A development machine of
another architecture cannot import them, so ``scripts/local_invoke.py`` could not run such
a function here. :func:`host_runnable_build` copies the built template and the functions
named, and replaces each vendored distribution that holds a shared object of a foreign
architecture by this interpreter's installed copy of the **same distribution and
version** (the pure-Python code, the function's own package and every other dependency
stay exactly as built). A different or missing version is an error naming the fix.

The copy is a build directory ``scripts.local_invoke`` takes (``--build-dir``)::

    python -m local_aws.host_build PlatformCallbackFunction --out .aws-sam/host-build
    python scripts/platform_push_event.py | python scripts/local_invoke.py \\
        PlatformCallbackFunction -e - --env-vars events/env.json --build-dir .aws-sam/host-build
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
from collections.abc import Iterable, Sequence
from email.parser import Parser
from importlib import metadata
from pathlib import Path
from typing import Final

__all__ = ["HostBuildError", "foreign_distributions", "host_runnable_build", "main"]

# ELF e_machine values (offset 18, little-endian) of the architectures Lambda runs.
_ELF_MACHINES: Final = {0x3E: "x86_64", 0xB7: "aarch64"}
_HOST_MACHINES: Final = {
    "x86_64": "x86_64",
    "amd64": "x86_64",
    "aarch64": "aarch64",
    "arm64": "aarch64",
}


class HostBuildError(RuntimeError):
    """The build cannot be made runnable here (a distribution missing or of another version)."""


def _host_machine() -> str:
    return _HOST_MACHINES.get(platform.machine().lower(), platform.machine().lower())


def _elf_machine(path: Path) -> str | None:
    with path.open("rb") as handle:
        header = handle.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    return _ELF_MACHINES.get(int.from_bytes(header[18:20], "little"), "unknown")


def _record_paths(dist_info: Path) -> list[str]:
    record = dist_info / "RECORD"
    if not record.is_file():
        return []
    return [line.split(",", 1)[0] for line in record.read_text().splitlines() if line.strip()]


def foreign_distributions(function_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """Vendored distributions with a shared object this machine cannot load:
    name -> (version, the paths its RECORD lists, relative to ``function_dir``)."""
    host = _host_machine()
    found: dict[str, tuple[str, list[str]]] = {}
    for dist_info in sorted(function_dir.glob("*.dist-info")):
        meta = Parser().parsestr((dist_info / "METADATA").read_text(errors="replace"))
        paths = _record_paths(dist_info)
        for relative in paths:
            candidate = function_dir / relative
            if candidate.suffix == ".so" and candidate.is_file():
                machine = _elf_machine(candidate)
                if machine is not None and machine != host:
                    found[str(meta["Name"])] = (str(meta["Version"]), paths)
                    break
    return found


def _replace(function_dir: Path, name: str, version: str, built_paths: Iterable[str]) -> None:
    try:
        installed = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        installed = None
    if installed is None or installed.version != version:
        have = "none" if installed is None else installed.version
        raise HostBuildError(
            f"{function_dir.name} vendors {name}=={version} built for another architecture; "
            f"this interpreter has {have}: pip install {name}=={version}"
        )
    for relative in built_paths:
        target = function_dir / relative
        if target.is_file() or target.is_symlink():
            target.unlink()
    for file in installed.files or ():
        source = Path(str(installed.locate_file(file)))
        if "__pycache__" in file.parts or not source.is_file():
            continue
        destination = function_dir / str(file)
        if not destination.resolve().is_relative_to(function_dir.resolve()):
            continue  # scripts installed outside site-packages (../../bin)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def host_runnable_build(build_dir: Path, destination: Path, function_ids: Sequence[str]) -> Path:
    """Copy ``build_dir``'s template and ``function_ids``' directories into
    ``destination`` (which must not exist), with foreign native extensions replaced by
    this interpreter's copies; return ``destination``."""
    template = build_dir / "template.yaml"
    if not template.is_file():
        raise HostBuildError(f"{template} not found: run `make build` (sam build) first")
    destination.mkdir(parents=True)
    shutil.copy2(template, destination / "template.yaml")
    for function_id in function_ids:
        source = build_dir / function_id
        if not source.is_dir():
            raise HostBuildError(f"{source} not found: run `make build` (sam build) first")
        copy = destination / function_id
        shutil.copytree(source, copy, symlinks=True)
        for name, (version, paths) in foreign_distributions(copy).items():
            _replace(copy, name, version, paths)
    return destination


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m local_aws.host_build",
        description="Copy built functions with their native extensions for this machine.",
    )
    parser.add_argument(
        "function_ids", nargs="+", help="logical ids, e.g. PlatformCallbackFunction"
    )
    parser.add_argument("--build-dir", type=Path, default=Path(".aws-sam/build"))
    parser.add_argument("--out", type=Path, default=Path(".aws-sam/host-build"))
    args = parser.parse_args(argv)
    if args.out.exists():
        shutil.rmtree(args.out)
    try:
        host_runnable_build(args.build_dir, args.out, args.function_ids)
    except HostBuildError as error:
        print(f"host_build: {error}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
