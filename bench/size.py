"""Measure 4: what the layer adds to a deployment, unzipped and zipped, against Powertools."""

from __future__ import annotations

import importlib.metadata
import io
import time
import zipfile
from pathlib import Path

import aws_lambda_powertools

from bench.imports import BUILT_LAYER, REPO, SOURCE_LAYER, build_is_current
from bench.results import Row, Section, kib, mib, table, x


def _files(root: Path, *, with_pyc: bool) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and (with_pyc or ("__pycache__" not in p.parts and p.suffix != ".pyc"))
    )


def _zipped(root: Path, files: list[Path]) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
        for path in files:
            archive.write(path, path.relative_to(root))
    return buffer.tell()


def _site(path: Path) -> str:
    """``site-packages/...`` rather than this machine's absolute path."""
    parts = path.parts
    return (
        "/".join(parts[parts.index("site-packages") :]) if "site-packages" in parts else str(path)
    )


def _dependencies(dist: str) -> list[str]:
    requires = importlib.metadata.requires(dist) or []
    return [r.split(";")[0].strip() for r in requires if "extra ==" not in r]


def measure() -> Section:
    began = time.perf_counter()
    current = build_is_current()
    if current is None:
        root, layer_note = SOURCE_LAYER, "no SAM build found, so the source tree"
    else:
        root = BUILT_LAYER.parent  # .aws-sam/build/WeChatTokenLayer: what the layer zip holds
        layer_note = "the SAM build" + (
            "" if current else "; **stale**: older than the source, run `make build`"
        )
    ours_files = _files(root, with_pyc=False)
    ours_bytes = sum(p.stat().st_size for p in ours_files)
    ours_zip = _zipped(root, ours_files)

    pt_root = Path(aws_lambda_powertools.__file__).parent
    pt_src = _files(pt_root, with_pyc=False)
    pt_all = _files(pt_root, with_pyc=True)
    pt_bytes = sum(p.stat().st_size for p in pt_src)
    pt_all_bytes = sum(p.stat().st_size for p in pt_all)
    pt_zip = _zipped(pt_root.parent, pt_src)
    deps = _dependencies("aws-lambda-powertools")

    rows = [
        Row(
            "4. Layer size, unzipped (no .pyc)",
            f"{kib(ours_bytes)} ({len(ours_files)} files)",
            f"{mib(pt_bytes)} Powertools package ({len(pt_src)} files)",
            f"{x(pt_bytes / ours_bytes)} smaller",
            "smaller than Powertools",
            ours_bytes < pt_bytes,
            f"zipped: {kib(ours_zip)} vs {kib(pt_zip)}",
        )
    ]
    detail = "\n".join(
        [
            f"Ours: every file under `{root.relative_to(REPO)}` ({layer_note}; "
            "no `__pycache__`). Powertools: the installed `aws_lambda_powertools` package "
            f"directory (`{_site(pt_root)}`), without and with its `.pyc` files; zipped with "
            "deflate level 6 as a layer zip would be. Neither counts boto3, which the Lambda "
            "runtime provides.",
            "",
            table(
                ["", "files", "unzipped", "zipped"],
                [
                    [
                        "ours (`wechat_token` layer)",
                        str(len(ours_files)),
                        kib(ours_bytes),
                        kib(ours_zip),
                    ],
                    ["Powertools (source only)", str(len(pt_src)), mib(pt_bytes), kib(pt_zip)],
                    [
                        "Powertools (with .pyc, as pip installs it)",
                        str(len(pt_all)),
                        mib(pt_all_bytes),
                        "",
                    ],
                ],
            ),
            "",
            f"Powertools' own runtime dependencies, not counted: {', '.join(deps) or 'none'}. "
            "Ours needs none beyond boto3; `WeChatClient` additionally needs httpx, which the "
            "layer does not bundle (layers/wechat_token/requirements.txt).",
        ]
    )
    data = {
        "ours_bytes": ours_bytes,
        "ours_zip": ours_zip,
        "ours_files": len(ours_files),
        "powertools_bytes": pt_bytes,
        "powertools_with_pyc_bytes": pt_all_bytes,
        "powertools_zip": pt_zip,
        "powertools_deps": deps,
    }
    return Section("4. Built layer size", rows, detail, data, time.perf_counter() - began)
