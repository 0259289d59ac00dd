"""Great Expectations Data Docs, served behind the Airflow login instead of a ``file://`` path on a worker.

The consistency runs build one Data Docs site in the GX project (``consistency.data_docs_dir``,
see ``migration_engine.consistency.suites``): ``<project>/uncommitted/data_docs/local_site/`` with
``index.html``, ``expectations/<suite>.html`` and one page per validation at
``validations/<suite>/<run name>/<run time>/<batch>.html``. The dashboard plugin serves that
directory (routes in ``migration_engine.airflow.dashboard_app``), so it must be a directory the
api-server can read: on one machine the default works; with several workers put
``consistency.data_docs_dir`` on shared storage (NFS, a mounted volume).

Every requested path is resolved inside the site directory and refused otherwise (``..``,
absolute paths, symlinks that lead out, hidden files): the route must never become a way to read
the api-server's files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from migration_engine.errors import MigrationError

SITE_PARTS = ("uncommitted", "data_docs", "local_site")
_RUN_TIME_RE = re.compile(r"^(\d{8}T\d{6})(?:\.(\d+))?Z$")
_SUITE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
MAX_PATH_CHARS = 1000


class DataDocsError(MigrationError):
    """A Data Docs request that cannot be answered; ``status`` is the HTTP status to answer with."""

    status = 404


class DataDocsRefused(DataDocsError):
    """The path is not inside the Data Docs site (traversal, absolute path, hidden file)."""

    status = 400


class DataDocsNotFound(DataDocsError):
    status = 404


def site_dir(cfg) -> Path:
    """The Data Docs site of the configured GX project (``consistency.data_docs_dir``)."""
    from migration_engine.consistency.suites import gx_root

    return gx_root(cfg).joinpath(*SITE_PARTS)


def resolve(site: Path, rel: str) -> Path:
    """The file ``rel`` names inside ``site``; refuses anything that is not plainly inside it."""
    if not isinstance(rel, str) or len(rel) > MAX_PATH_CHARS:
        raise DataDocsRefused("Data Docs path is too long")
    rel = rel or "index.html"
    if "\x00" in rel or "\\" in rel:
        raise DataDocsRefused(f"Data Docs path {rel!r} contains a NUL or a backslash")
    pure = PurePosixPath(rel)
    if pure.is_absolute() or any(part in ("..", ".") or part.startswith(".") for part in pure.parts):
        raise DataDocsRefused(f"Data Docs path {rel!r} is not inside the Data Docs site (no '..', absolute "
                              "or hidden paths)")
    root = site.resolve()
    if not root.is_dir():
        raise DataDocsNotFound(f"no Data Docs yet: {root} does not exist (the consistency DAGs build it on "
                               "their first run; on several machines consistency.data_docs_dir must be shared)")
    target = (root / pure).resolve()
    if not target.is_relative_to(root):
        raise DataDocsRefused(f"Data Docs path {rel!r} leads out of the Data Docs site")
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        raise DataDocsNotFound(f"no Data Docs page {rel!r}")
    return target


@dataclass(frozen=True)
class SuiteDocs:
    suite: str
    latest: str | None        # path of the newest validation page, relative to the site
    run_name: str | None
    validated_at: datetime | None
    expectations: str | None  # the suite's page, relative to the site
    validations: int          # how many validation pages the site holds for it


def _run_time(name: str, path: Path) -> datetime:
    m = _RUN_TIME_RE.match(name)
    if m:
        t = datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        return t.replace(microsecond=int((m.group(2) or "0")[:6].ljust(6, "0")))
    return datetime.fromtimestamp(path.stat().st_mtime, UTC)


def suites(site: Path) -> list[SuiteDocs]:
    """Every suite in the site with its newest validation page, sorted by name."""
    root = site.resolve()
    out: dict[str, SuiteDocs] = {}
    names: set[str] = set()
    if (root / "expectations").is_dir():
        names |= {p.stem for p in (root / "expectations").glob("*.html")}
    if (root / "validations").is_dir():
        names |= {p.name for p in (root / "validations").iterdir() if p.is_dir()}
    for name in sorted(n for n in names if _SUITE_RE.match(n)):
        pages = []
        vdir = root / "validations" / name
        if vdir.is_dir():
            for page in vdir.glob("*/*/*.html"):
                run_dir = page.parent
                pages.append((_run_time(run_dir.name, page), page.stat().st_mtime, page))
        pages.sort(key=lambda p: (p[0], p[1]))
        exp = root / "expectations" / f"{name}.html"
        latest = pages[-1] if pages else None
        out[name] = SuiteDocs(
            suite=name,
            latest=latest[2].relative_to(root).as_posix() if latest else None,
            run_name=latest[2].parent.parent.name if latest else None,
            validated_at=latest[0] if latest else None,
            expectations=exp.relative_to(root).as_posix() if exp.is_file() else None,
            validations=len(pages),
        )
    return list(out.values())


def latest_page(site: Path, suite: str) -> str:
    """The newest validation page of ``suite`` (relative to the site); names the problem otherwise."""
    if not _SUITE_RE.match(suite or ""):
        raise DataDocsRefused(f"{suite!r} is not a suite name")
    for s in suites(site):
        if s.suite == suite:
            if s.latest is None:
                raise DataDocsNotFound(f"suite {suite!r} has not been validated yet")
            return s.latest
    raise DataDocsNotFound(f"no Data Docs for suite {suite!r}")
