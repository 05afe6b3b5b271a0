"""``palisade layer build|analyzer``: the Lambda layer zip and the analyzer's code.

The zip is laid out the way Lambda unpacks a layer into ``/opt``
(``docs/architecture.md``, "Layer file layout"):

    python/palisade/...        the in-process package, plus wrapt for the target
    palisade-exec-wrapper      the AWS_LAMBDA_EXEC_WRAPPER script
    extensions/palisade        the extension launcher, alone in its folder
    palisade/                  palisade_extension and its dependencies

Third-party code is never copied from the build machine: every wheel is fetched
for the target platform (``manylinux2014_<arch>``, CPython ``X.Y``) with pip into a
cache folder, then resolved offline from that cache, so a second build needs no
network. Versions are pinned to the ones installed where the build runs (the ones
the test suite exercised); a package missing there is taken at its newest version.

``palisade layer analyzer --into DIR`` lays out the analyzer's Lambda code the same
way (its package, the in-process package it shares schemas with, and its
dependencies for the target), as a folder for SAM or CDK to zip.

Bytecode: the in-process package's modules are compiled by the target
interpreter (``pythonX.Y`` found on this machine) into unchecked-hash ``.pyc``
files, because ``/opt`` is read-only on Lambda and a cold start would otherwise
compile them every time (measured: about 260 ms instead of about 50 ms). Without
that interpreter the build says so and ships sources only.

Shortcomings: the extension's code and its dependencies under ``palisade/`` ship
without bytecode; wheels' ``RECORD`` files still list the tests and caches that
the build leaves out.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from .interpreters import find_interpreter

log = logging.getLogger(__name__)

ARCHES: dict[str, str] = {
    "x86_64": "manylinux2014_x86_64",
    "arm64": "manylinux2014_aarch64",
}
DEFAULT_ARCH = "x86_64"
DEFAULT_PYTHON = "3.12"
# Lambda's limit is 50 MB zipped; ours is far lower because every byte is read on
# each cold start and the layer shares the 250 MB unzipped budget with the function.
DEFAULT_MAX_ZIPPED = 5_000_000
# The zip format's earliest date: a fixed timestamp keeps the archive reproducible.
FIXED_DATE = (1980, 1, 1, 0, 0, 0)

# What goes under python/ besides the palisade package.
LAYER_REQUIREMENTS: tuple[str, ...] = ("wrapt",)
# What the extension needs under palisade/ that the Lambda Python runtime lacks.
EXTENSION_REQUIREMENTS: tuple[str, ...] = (
    "jsonschema",
    "PyYAML",
    "opentelemetry-api",
    "opentelemetry-sdk",
)
# What the analyzer's Lambda functions need beside their own code.
ANALYZER_REQUIREMENTS: tuple[str, ...] = ("aws-lambda-powertools", "jsonschema")
# The managed Python runtimes ship these; a second copy in /opt would shadow the
# runtime's own (and cost megabytes), so they are dropped even when pulled in.
RUNTIME_PROVIDED: frozenset[str] = frozenset(
    {"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"}
)

_SKIP_DIRS = frozenset({"__pycache__", "tests", "test", ".mypy_cache", ".pytest_cache"})
_SKIP_SUFFIXES = (".pyc", ".pyo")


class LayerBuildError(Exception):
    """The layer could not be built; the message says what to change."""


@dataclass(frozen=True)
class Entry:
    """One file of the zip."""

    name: str
    data: bytes
    mode: int


@dataclass
class BuildResult:
    """What a build wrote."""

    path: Path
    zipped_bytes: int
    unzipped_bytes: int
    files: int
    sha256: str
    distributions: dict[str, str] = field(default_factory=dict)


def repo_root() -> Path:
    """The source checkout this CLI runs from (with ``layer/`` and ``extension/``)."""
    return Path(__file__).resolve().parents[2]


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(requirements: Iterable[str]) -> list[str]:
    """Pin each requirement to the version installed here, when there is one."""
    pinned = []
    for name in requirements:
        try:
            pinned.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pinned.append(name)
    return pinned


def _target_options(arch: str, python: str) -> list[str]:
    return [
        "--only-binary=:all:",
        "--platform",
        ARCHES[arch],
        "--python-version",
        python,
        "--implementation",
        "cp",
    ]


def _run_pip(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def _resolve_offline(
    requirements: list[str], cache: Path, arch: str, python: str
) -> list[tuple[str, str, Path]] | None:
    """Resolve from the cache alone; ``None`` when the cache lacks something."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # --isolated: only the cache may answer, not the machine's configured
        # indexes or find-links folders.
        done = _run_pip(
            [
                "--isolated",
                "install",
                "--quiet",
                "--dry-run",
                "--ignore-installed",
                "--no-index",
                "--find-links",
                str(cache),
                "--report",
                str(report),
                *_target_options(arch, python),
                *requirements,
            ]
        )
        if done.returncode != 0:
            log.debug("offline resolve failed: %s", done.stderr.strip())
            return None
        chosen = json.loads(report.read_text())["install"]
    resolved = []
    for item in chosen:
        url = item["download_info"]["url"]
        resolved.append(
            (
                item["metadata"]["name"],
                item["metadata"]["version"],
                Path(unquote(urlparse(url).path)),
            )
        )
    return resolved


def fetch_wheels(
    requirements: Sequence[str], cache: Path, arch: str, python: str
) -> list[tuple[str, str, Path]]:
    """Wheels for the target platform, dependencies included: (name, version, file).

    Raises:
        LayerBuildError: pip could not find a binary wheel for the target.
    """
    cache.mkdir(parents=True, exist_ok=True)
    wanted = list(requirements)
    resolved = _resolve_offline(wanted, cache, arch, python)
    if resolved is None:
        done = _run_pip(
            [
                "download",
                "--quiet",
                "--dest",
                str(cache),
                *_target_options(arch, python),
                *wanted,
            ]
        )
        if done.returncode != 0:
            raise LayerBuildError(
                f"pip could not fetch wheels for {' '.join(wanted)} on "
                f"{ARCHES[arch]} / CPython {python}: {done.stderr.strip()[-2000:]}\n"
                "Each dependency needs a binary wheel for the target platform; "
                "check the registry is reachable and the versions exist there."
            )
        resolved = _resolve_offline(wanted, cache, arch, python)
    if resolved is None:
        raise LayerBuildError(
            f"wheels for {' '.join(wanted)} were downloaded to {cache} but do not "
            "resolve offline; delete that folder and build again"
        )
    return resolved


def _mode_of(path: Path) -> int:
    return 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644


def tree_entries(source: Path, prefix: str) -> Iterator[Entry]:
    """Files below ``source`` placed under ``prefix``, tests and caches left out."""
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if any(part in _SKIP_DIRS for part in rel.parts) or path.is_dir():
            continue
        if path.suffix in _SKIP_SUFFIXES:
            continue
        yield Entry(f"{prefix}/{rel.as_posix()}", path.read_bytes(), _mode_of(path))


def wheel_entries(wheel: Path, prefix: str) -> Iterator[Entry]:
    """A wheel's installable files placed under ``prefix``, as pip would lay them."""
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            parts = info.filename.split("/")
            if parts[0].endswith(".data"):
                # Only library code is kept: scripts, headers and data files serve
                # an installed environment, not an import path.
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                parts = parts[2:]
            if any(part in _SKIP_DIRS for part in parts[:-1]):
                continue
            if parts[-1].endswith(_SKIP_SUFFIXES):
                continue
            mode = 0o755 if (info.external_attr >> 16) & stat.S_IXUSR else 0o644
            name = "/".join([prefix, *parts] if prefix else parts)
            yield Entry(name, archive.read(info), mode)


def _launcher(root: Path) -> Path:
    """The extension launcher: ``extension/launcher`` or the one file inside it."""
    launcher = root / "extension" / "launcher"
    if launcher.is_dir():
        files = sorted(p for p in launcher.iterdir() if p.is_file())
        named = [p for p in files if p.name == "palisade"]
        if named:
            return named[0]
        if len(files) == 1:
            return files[0]
        raise LayerBuildError(
            f"expected one launcher script in {launcher} (or one named 'palisade'), "
            f"found {[p.name for p in files]}"
        )
    if launcher.is_file():
        return launcher
    raise LayerBuildError(
        f"expected the extension launcher at {launcher}, found nothing; the "
        "extension's sources are missing from this checkout"
    )


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise LayerBuildError(f"expected {what} at {path}, found nothing")
    return path


def collect(
    root: Path, arch: str, python: str, cache: Path
) -> tuple[list[Entry], dict[str, str]]:
    """Every file of the layer and the third-party distributions bundled."""
    palisade_pkg = _require(root / "layer" / "palisade", "the in-process package")
    extension_pkg = _require(
        root / "extension" / "palisade_extension", "the extension package"
    )
    wrapper = _require(palisade_pkg / "exec-wrapper", "the exec wrapper")
    launcher = _launcher(root)

    entries = list(tree_entries(palisade_pkg, "python/palisade"))
    entries += list(tree_entries(extension_pkg, "palisade/palisade_extension"))
    entries.append(Entry("palisade-exec-wrapper", wrapper.read_bytes(), 0o755))
    entries.append(Entry("extensions/palisade", launcher.read_bytes(), 0o755))

    bundled: dict[str, str] = {}
    for prefix, requirements in (
        ("python", LAYER_REQUIREMENTS),
        ("palisade", EXTENSION_REQUIREMENTS),
    ):
        wheels, versions = _third_party(prefix, requirements, cache, arch, python)
        entries += wheels
        bundled.update(versions)

    compiled = bytecode(entries, python, "python/palisade/")
    if compiled is None:
        print(
            f"palisade layer: python{python} not found on this machine; the layer "
            "ships sources only, so each cold start compiles them",
            file=sys.stderr,
        )
    else:
        entries += compiled
    manifest = {
        "arch": arch,
        "python": python,
        "platform": ARCHES[arch],
        "distributions": bundled,
        "bytecode": compiled is not None,
    }
    entries.append(
        Entry(
            "palisade/layer-manifest.json",
            (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode(),
            0o644,
        )
    )
    return _deduplicated(entries), bundled


# Compiles every .py under argv[1] next to itself (``__pycache__``), with the
# path it will have under /opt in tracebacks. Unchecked-hash pycs stay valid
# whatever the files' dates are once unzipped.
_COMPILE = """
import pathlib, py_compile, sys
root = pathlib.Path(sys.argv[1])
for src in sorted(root.rglob("*.py")):
    rel = src.relative_to(root).as_posix()
    py_compile.compile(
        str(src),
        dfile="/opt/" + rel,
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )
"""


def bytecode(entries: list[Entry], python: str, prefix: str) -> list[Entry] | None:
    """``.pyc`` entries for the ``.py`` entries under ``prefix``, compiled by the
    target interpreter; None when no ``python<version>`` is on this machine.

    Raises:
        LayerBuildError: the target interpreter failed to compile a module.
    """
    exe = find_interpreter(python)
    if exe is None:
        return None
    sources = [
        e for e in entries if e.name.startswith(prefix) and e.name.endswith(".py")
    ]
    with tempfile.TemporaryDirectory(prefix="palisade-pyc-") as tmp:
        root = Path(tmp)
        for entry in sources:
            path = root / entry.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry.data)
        # A fixed hash seed keeps set and frozenset constants in the same order,
        # so two builds write the same bytes.
        done = subprocess.run(
            [exe, "-c", _COMPILE, str(root)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        if done.returncode != 0:
            raise LayerBuildError(
                f"{exe} could not compile the layer's modules: "
                f"{done.stderr.strip().splitlines()[-1:] or done.returncode}"
            )
        return [
            Entry(path.relative_to(root).as_posix(), path.read_bytes(), 0o644)
            for path in sorted(root.rglob("*.pyc"))
        ]


def _deduplicated(entries: list[Entry]) -> list[Entry]:
    by_name: dict[str, Entry] = {}
    for entry in entries:
        earlier = by_name.get(entry.name)
        if earlier is not None and earlier.data != entry.data:
            raise LayerBuildError(
                f"two different files want the path {entry.name!r} in the layer; "
                "two bundled packages overlap, pin one of them"
            )
        by_name[entry.name] = entry
    return [by_name[name] for name in sorted(by_name)]


def _directories(names: Iterable[str]) -> list[str]:
    dirs: set[str] = set()
    for name in names:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]) + "/")
    return sorted(dirs)


def write_zip(entries: list[Entry], path: Path) -> None:
    """Write a reproducible zip: sorted names, fixed dates, explicit Unix modes."""
    with zipfile.ZipFile(path, "w") as archive:
        names = [entry.name for entry in entries]
        items: list[tuple[str, Entry | None]] = [(d, None) for d in _directories(names)]
        items += [(entry.name, entry) for entry in entries]
        for name, entry in sorted(items, key=lambda item: item[0]):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE)
            info.create_system = 3  # Unix, so the modes below are honoured
            if entry is None:
                info.external_attr = ((stat.S_IFDIR | 0o755) << 16) | 0x10
                archive.writestr(info, b"")
                continue
            info.external_attr = (stat.S_IFREG | entry.mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entry.data, compresslevel=9)


def write_tree(entries: list[Entry], into: Path) -> None:
    """Write ``entries`` below ``into`` with their modes (what ``unzip`` would do)."""
    for entry in entries:
        path = into / entry.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(entry.data)
        path.chmod(entry.mode)


def _third_party(
    prefix: str,
    requirements: Sequence[str],
    cache: Path,
    arch: str,
    python: str,
) -> tuple[list[Entry], dict[str, str]]:
    entries: list[Entry] = []
    bundled: dict[str, str] = {}
    target_cache = cache / f"{arch}-cp{python.replace('.', '')}"
    for name, version, wheel in fetch_wheels(
        _pinned(requirements), target_cache, arch, python
    ):
        if _canonical(name) in RUNTIME_PROVIDED:
            log.info("leaving out %s: the Lambda runtime provides it", name)
            continue
        bundled[f"{prefix}/{name}" if prefix else name] = version
        entries += list(wheel_entries(wheel, prefix))
    return entries, bundled


def _check_target(arch: str, python: str) -> None:
    if arch not in ARCHES:
        raise LayerBuildError(
            f"expected --arch one of {sorted(ARCHES)}, found {arch!r}"
        )
    if not re.fullmatch(r"3\.\d{1,2}", python):
        raise LayerBuildError(
            f"expected --python as MAJOR.MINOR (e.g. 3.12), found {python!r}"
        )


def extract(zip_path: Path, into: Path) -> None:
    """Unpack a layer zip into ``into`` keeping each file's Unix mode."""
    with zipfile.ZipFile(zip_path) as archive:
        entries = [
            Entry(info.filename, archive.read(info), (info.external_attr >> 16) & 0o777)
            for info in archive.infolist()
            if not info.is_dir()
        ]
    write_tree(entries, into)


def build_analyzer(
    into: Path,
    arch: str = DEFAULT_ARCH,
    python: str = DEFAULT_PYTHON,
    cache: Path | None = None,
    root: Path | None = None,
) -> BuildResult:
    """Lay out the analyzer's Lambda code in ``into`` (emptied first).

    Raises:
        LayerBuildError: a source is missing or a wheel cannot be had.
    """
    _check_target(arch, python)
    root = root or repo_root()
    cache = cache or root / "build" / "layer-cache"
    analyzer_pkg = _require(root / "analyzer" / "palisade_analyzer", "the analyzer")
    palisade_pkg = _require(root / "layer" / "palisade", "the in-process package")

    entries = list(tree_entries(analyzer_pkg, "palisade_analyzer"))
    entries += list(tree_entries(palisade_pkg, "palisade"))
    wheels, bundled = _third_party("", ANALYZER_REQUIREMENTS, cache, arch, python)
    entries = _deduplicated(entries + wheels)

    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    write_tree(entries, into)
    return BuildResult(
        path=into,
        zipped_bytes=0,
        unzipped_bytes=sum(len(entry.data) for entry in entries),
        files=len(entries),
        sha256=_tree_digest(entries),
        distributions=bundled,
    )


def _tree_digest(entries: list[Entry]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        digest.update(f"{entry.name}\0{entry.mode:o}\0{len(entry.data)}\0".encode())
        digest.update(entry.data)
    return digest.hexdigest()


def build_layer(
    arch: str = DEFAULT_ARCH,
    python: str = DEFAULT_PYTHON,
    out: Path | None = None,
    cache: Path | None = None,
    root: Path | None = None,
    max_zipped: int = DEFAULT_MAX_ZIPPED,
) -> BuildResult:
    """Build ``<out>/palisade-layer-<arch>.zip`` and return its measurements.

    Raises:
        LayerBuildError: a source is missing, a wheel cannot be had for the target,
            or the zip is over ``max_zipped`` bytes (then no zip is left behind).
    """
    _check_target(arch, python)
    root = root or repo_root()
    out = out or root / "dist"
    cache = cache or root / "build" / "layer-cache"

    entries, bundled = collect(root, arch, python, cache)

    out.mkdir(parents=True, exist_ok=True)
    final = out / f"palisade-layer-{arch}.zip"
    fd, tmp_name = tempfile.mkstemp(dir=out, prefix=".palisade-layer-", suffix=".zip")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_zip(entries, tmp)
        zipped = tmp.stat().st_size
        if zipped > max_zipped:
            raise LayerBuildError(
                f"the layer is {zipped:,} bytes zipped, over the budget of "
                f"{max_zipped:,} bytes; drop a dependency or raise --max-size-mb"
            )
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    return BuildResult(
        path=final,
        zipped_bytes=zipped,
        unzipped_bytes=sum(len(entry.data) for entry in entries),
        files=len(entries),
        sha256=digest,
        distributions=bundled,
    )


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=sorted(ARCHES), default=DEFAULT_ARCH)
    parser.add_argument(
        "--python",
        default=DEFAULT_PYTHON,
        help="CPython version of the target runtime (default %(default)s)",
    )
    parser.add_argument(
        "--cache", type=Path, default=None, help="wheel cache (build/layer-cache/)"
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="palisade layer build",
        description="Build the Palisade Lambda layer zip for one architecture.",
    )
    _target_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="default: dist/")
    parser.add_argument(
        "--extract",
        type=Path,
        default=None,
        metavar="DIR",
        help="also unpack the layer into DIR, modes kept (for sam build)",
    )
    parser.add_argument(
        "--max-size-mb",
        type=float,
        default=DEFAULT_MAX_ZIPPED / 1_000_000,
        help="zipped size budget in MB (default %(default)s)",
    )
    return parser


def _analyzer_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="palisade layer analyzer",
        description="Lay out the analyzer's Lambda code, dependencies included.",
    )
    _target_arguments(parser)
    parser.add_argument("--into", type=Path, required=True, metavar="DIR")
    return parser


def _report(result: BuildResult) -> None:
    print(f"wrote {result.path}")
    if result.zipped_bytes:
        print(f"  zipped   {result.zipped_bytes:>12,} bytes")
    print(f"  unzipped {result.unzipped_bytes:>12,} bytes in {result.files} files")
    print(f"  sha256   {result.sha256}")
    for name, version in sorted(result.distributions.items()):
        print(f"  bundled  {name}=={version}")


def main(argv: Sequence[str]) -> int:
    """``palisade layer build [--arch A] [--python X.Y] ...`` or ``analyzer``."""
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: palisade layer {build,analyzer} [--arch x86_64|arm64] ...")
        print("  build     the layer zip: dist/palisade-layer-<arch>.zip")
        print("  analyzer  the analyzer's Lambda code in a folder")
        return 0 if args else 2
    if args[0] not in ("build", "analyzer"):
        print(
            f"palisade layer: unknown subcommand {args[0]!r}; expected build or "
            "analyzer",
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    try:
        if args[0] == "analyzer":
            opts = _analyzer_parser().parse_args(args[1:])
            result = build_analyzer(
                opts.into, arch=opts.arch, python=opts.python, cache=opts.cache
            )
        else:
            opts = _build_parser().parse_args(args[1:])
            result = build_layer(
                arch=opts.arch,
                python=opts.python,
                out=opts.out,
                cache=opts.cache,
                max_zipped=int(opts.max_size_mb * 1_000_000),
            )
            if opts.extract is not None:
                extract(result.path, opts.extract)
    except LayerBuildError as exc:
        print(f"palisade layer {args[0]}: {exc}", file=sys.stderr)
        return 1
    _report(result)
    return 0
