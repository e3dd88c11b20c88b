"""The documentation site (docs/, mkdocs.yml): every example runs, and the site builds.

Each page's ```python blocks run in order in one namespace per page, with the current
directory a temporary folder and matplotlib on the Agg backend, by the same code that
writes the outputs into the pages (docs/render_outputs.py); any exception fails the page's
test. The code spans of the translation table's multilevel column run too. A block that
prints must be followed by its ```text output block (and one that prints nothing must not
be): the output blocks are written by ``python docs/render_outputs.py``, not by hand.
Their content is not compared (the last digits may differ between machines); run
``python docs/render_outputs.py --check`` to see which pages a fresh run would change.

The last test builds the site with ``mkdocs build --strict`` when mkdocs, mkdocs-material
and mkdocstrings[python] are installed (the ``docs`` extra), and is skipped otherwise.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

#: Optional dependencies a page needs beyond multilevel's own (the page is skipped without them).
REQUIRES = {
    "large-data.md": ["pyarrow", "dask.dataframe"],
    "plots.md": ["matplotlib"],
}


def _renderer():
    spec = importlib.util.spec_from_file_location("docs_render_outputs", DOCS / "render_outputs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


render = _renderer()


def _missing(modules: list[str]) -> list[str]:
    out = []
    for name in modules:
        try:
            __import__(name)
        except ImportError:
            out.append(name)
    return out


def test_pages_found():
    names = {p.name for p in PAGES}
    assert {"index.md", "getting-started.md", "lmm.md", "glmm.md", "gls.md", "gee.md", "inference.md",
            "correlation-structures.md", "large-data.md", "array-api.md", "plots.md", "translation.md",
            "api.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run(page: Path, tmp_path: Path):
    missing = _missing(REQUIRES.get(page.name, []))
    if missing:
        pytest.skip(f"{page.name} needs {', '.join(missing)} (pip install '.[test]')")
    lines = page.read_text().splitlines(keepends=True)
    blocks = render.python_blocks(lines)
    try:
        run = render.run_page(page, tmp_path)
    except render.DocsBlockError as err:
        pytest.fail(str(err), pytrace=False)
    for k, (pb, printed) in enumerate(zip(blocks, run.outputs)):
        where = f"{page.name}: python block {k + 1} (line {pb.block.start + 1})"
        if printed.strip() and pb.output is None:
            pytest.fail(f"{where} prints but has no ```text output block after it; "
                        f"run python docs/render_outputs.py docs/{page.name}", pytrace=False)
        if not printed.strip() and pb.output is not None:
            pytest.fail(f"{where} prints nothing but is followed by a ```text block; "
                        f"run python docs/render_outputs.py docs/{page.name}", pytrace=False)


def test_translation_table_calls_are_found():
    calls = render.table_calls((DOCS / "translation.md").read_text().splitlines(keepends=True))
    assert len(calls) > 80
    assert all(code.strip() for _, code in calls)


def test_pages_are_in_the_nav_and_images_exist():
    config = (ROOT / "mkdocs.yml").read_text()
    for page in PAGES:
        assert re.search(rf"\b{re.escape(page.name)}\b", config), f"{page.name} is not in mkdocs.yml's nav"
        for image in render.IMAGE.findall(page.read_text()):
            assert (DOCS / "images" / image).is_file(), f"{page.name} shows images/{image}, which is missing"


def test_mkdocs_build_strict(tmp_path: Path):
    for module, package in (("mkdocs", "mkdocs"), ("material", "mkdocs-material"),
                            ("mkdocstrings", "mkdocstrings"), ("mkdocstrings_handlers.python", "mkdocstrings-python")):
        if importlib.util.find_spec(module.split(".")[0]) is None or (
                "." in module and _missing([module])):
            pytest.skip(f"{package} is not installed: pip install mkdocs-material 'mkdocstrings[python]' "
                        "(the docs extra) to build the site")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "api" / "index.html").is_file()
