"""Layer size, zipped and unzipped, from a zip built by ``palisade layer build``.

The zip is built afresh into a temporary folder (the wheel cache under
``build/layer-cache`` is shared with ``make layer``, so only the first build
needs the package registry), then read back with :mod:`zipfile`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from .children import clean_env
from .errors import BenchError
from .figures import Figure, judged
from .settings import REPO, Plan

SECTION = "layer"
ARCH = "x86_64"
# Figures held to a budget: (id, name, unit, budget key), reported as not
# measured with the reason when the section cannot run.
BUDGETED = (("layer.zip_mb", f"layer zip ({ARCH}), zipped", "MB", "layer_zip_mb"),)


def _build(out: Path) -> tuple[Path, float]:
    command = [
        sys.executable,
        "-m",
        "palisade_cli.main",
        "layer",
        "build",
        "--arch",
        ARCH,
        "--out",
        str(out),
        # Measure the real size even over budget: the budget is judged here.
        "--max-size-mb",
        "1000",
    ]
    began = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=str(REPO),
            env=clean_env(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(
            "palisade layer build did not finish within 300 s; run `make layer` "
            "by hand to see where it stops"
        ) from exc
    elapsed = time.perf_counter() - began
    zip_path = out / f"palisade-layer-{ARCH}.zip"
    if done.returncode != 0 or not zip_path.is_file():
        lines = [ln for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        raise BenchError(
            f"palisade layer build failed (status {done.returncode}): "
            f"{(lines[-1] if lines else 'no output')[:300]}"
        )
    return zip_path, elapsed


def measure(plan: Plan) -> dict[str, Any]:
    """Build the layer zip and report its sizes against the 5 MB budget."""
    with tempfile.TemporaryDirectory(prefix="palisade-bench-layer-") as tmp:
        zip_path, elapsed = _build(Path(tmp))
        zipped = zip_path.stat().st_size
        with zipfile.ZipFile(zip_path) as archive:
            infos = [i for i in archive.infolist() if not i.is_dir()]
        unzipped = sum(i.file_size for i in infos)
        by_top: dict[str, list[int]] = {}
        for info in infos:
            top = info.filename.split("/", 1)[0]
            sizes = by_top.setdefault(top, [0, 0, 0])
            sizes[0] += info.compress_size
            sizes[1] += info.file_size
            sizes[2] += 1

    parts = ", ".join(
        f"{top}/ {sizes[0] / 1e6:.2f} MB zipped, {sizes[2]} files"
        for top, sizes in sorted(by_top.items(), key=lambda kv: -kv[1][0])
    )
    figures = [
        judged(
            Figure(
                id=BUDGETED[0][0],
                section=SECTION,
                name=BUDGETED[0][1],
                value=zipped / 1e6,
                unit="MB",
                n=1,
                context=f"{zipped:,} bytes; {parts}",
            ),
            "layer_zip_mb",
        ),
        Figure(
            id="layer.unzipped_mb",
            section=SECTION,
            name=f"layer ({ARCH}), unzipped",
            value=unzipped / 1e6,
            unit="MB",
            n=1,
            context=f"{unzipped:,} bytes in {len(infos)} files (Lambda's limit: "
            "250 MB unzipped for the function and all its layers)",
        ),
        Figure(
            id="layer.build_s",
            section=SECTION,
            name="layer build time (context: wheel cache warm after the first build)",
            value=elapsed,
            unit="s",
            n=1,
        ),
    ]
    return {
        "figures": figures,
        "raw": {
            "zipped_bytes": zipped,
            "unzipped_bytes": unzipped,
            "files": len(infos),
            "by_top_folder": by_top,
        },
        "notes": "Sizes of the zip `palisade layer build` writes, read back with "
        "Python's zipfile: zipped is the file's size, unzipped the sum of its "
        "members' sizes.",
    }
