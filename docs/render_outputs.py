"""Run the Python examples of the documentation and write their printed output under each block.

Every ```python block of a page runs, in order, in one namespace per page, with the current
directory a fresh temporary folder and matplotlib on the Agg backend. What a block prints
(and the warnings raised for it or inside multilevel, as ``WarningClass: message``) goes into a ```text block right
after it; a block that prints nothing gets none. PNG files that a page's blocks write and
that the page shows as ``![...](images/<name>.png)`` are copied into ``docs/images/``.

    python docs/render_outputs.py                 # every page: run and rewrite the outputs
    python docs/render_outputs.py docs/lmm.md     # one page
    python docs/render_outputs.py --check         # run, report pages whose outputs differ; exit 1 if any

In a table whose header has a ``multilevel`` column (the translation page), every code span
of that column is executed too, after the page's blocks, in the page's namespace.
``tests/test_docs.py`` uses the same functions, so the test runs exactly what this script
renders.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

DOCS = Path(__file__).resolve().parent
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
IMAGE = re.compile(r"!\[[^\]]*\]\(images/([\w.-]+\.png)\)")
CODE_SPAN = re.compile(r"`([^`]+)`")


@dataclass
class Block:
    """A fenced block: its info string, code, and the line range of the whole fence (0-based, end exclusive)."""

    lang: str
    code: str
    start: int
    end: int


@dataclass
class PythonBlock:
    block: Block
    output: Block | None  # the ```text block right after it, if any


@dataclass
class PageRun:
    page: Path
    outputs: list[str] = field(default_factory=list)  # one per python block
    images: dict[str, Path] = field(default_factory=dict)


class DocsBlockError(Exception):
    """A block of a page raised: says which page, block and line."""


def fenced_blocks(lines: list[str]) -> list[Block]:
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        if j == len(lines):
            raise ValueError(f"unclosed code fence opened at line {i + 1}")
        blocks.append(Block(m.group(1), "".join(lines[i + 1:j]), i, j + 1))
        i = j + 1
    return blocks


def python_blocks(lines: list[str]) -> list[PythonBlock]:
    """The ```python blocks of a page, each with the ```text output block that follows it (blank lines apart)."""
    blocks = fenced_blocks(lines)
    out = []
    for k, b in enumerate(blocks):
        if b.lang != "python":
            continue
        nxt = blocks[k + 1] if k + 1 < len(blocks) else None
        follows = nxt is not None and nxt.lang == "text" and all(not s.strip() for s in lines[b.end:nxt.start])
        out.append(PythonBlock(b, nxt if follows else None))
    return out


def split_cells(row: str) -> list[str]:
    """Cells of a markdown table row; a ``|`` inside a code span or escaped as ``\\|`` does not split."""
    cells, cur, in_code, i = [], "", False, 0
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    if row.endswith("|") and not row.endswith("\\|"):
        row = row[:-1]
    while i < len(row):
        ch = row[i]
        if ch == "\\" and i + 1 < len(row) and row[i + 1] == "|":
            cur += "\\|"
            i += 2
            continue
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append(cur.strip())
            cur = ""
        else:
            cur += ch
        i += 1
    cells.append(cur.strip())
    return cells


def table_calls(lines: list[str]) -> list[tuple[int, str]]:
    """(line number, code) of every code span in the ``multilevel`` column of the page's tables."""
    fenced = set()
    for b in fenced_blocks(lines):
        fenced.update(range(b.start, b.end))
    calls, column = [], None
    for n, line in enumerate(lines):
        if n in fenced or not line.lstrip().startswith("|"):
            column = None
            continue
        cells = split_cells(line)
        if column is None:  # a header row
            column = cells.index("multilevel") if "multilevel" in cells else -1
            continue
        if column < 0 or column >= len(cells) or set(cells[column]) <= set("-: "):
            continue
        for code in CODE_SPAN.findall(cells[column]):
            calls.append((n + 1, code.replace("\\|", "|")))
    return calls


def _format_warning(w: warnings.WarningMessage) -> str:
    return f"{w.category.__name__}: {w.message}"


def _from_multilevel_or_page(w: warnings.WarningMessage, page: Path) -> bool:
    """Warnings raised for the page's code (multilevel's own point there) or inside multilevel; not the
    deprecation notes of other libraries (Dask on a new pandas), which would make the outputs noisy."""
    import multilevel

    here = Path(w.filename)
    return here == page or Path(multilevel.__file__).parent in here.parents


def _prepare_matplotlib() -> None:
    os.environ["MPLBACKEND"] = "Agg"
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")


def _close_figures() -> None:
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


#: pandas options the pages set for their printouts; restored after each page (tests run in one process).
PANDAS_OPTIONS = ("display.width", "display.max_columns", "display.max_rows", "display.precision")


def run_page(page: Path, workdir: Path) -> PageRun:
    """Run the page's python blocks in order in one namespace, in ``workdir``; raise DocsBlockError on a failure.

    The current directory, pandas' display options, multilevel's thread count and matplotlib's figures
    are as before afterwards.
    """
    import pandas as pd

    import multilevel

    _prepare_matplotlib()
    saved_options = {name: pd.get_option(name) for name in PANDAS_OPTIONS}
    threads = multilevel.get_num_threads()
    lines = page.read_text().splitlines(keepends=True)
    blocks = python_blocks(lines)
    namespace: dict = {"__name__": "__docs__"}
    run = PageRun(page)
    old_cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for k, pb in enumerate(blocks):
            buffer = io.StringIO()
            lineno = pb.block.start + 2  # the first code line, 1-based
            code = compile("\n" * (lineno - 1) + pb.block.code, str(page), "exec")
            with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buffer):
                warnings.simplefilter("always")
                try:
                    exec(code, namespace)
                except Exception as exc:
                    raise DocsBlockError(f"{page.name}: python block {k + 1} (line {lineno}) raised "
                                         f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}") from exc
            shown = list(dict.fromkeys(_format_warning(w) for w in caught if _from_multilevel_or_page(w, page)))
            text = buffer.getvalue()
            if shown:
                text = "\n".join(shown) + "\n" + text
            run.outputs.append(text)
        for lineno, call in table_calls(lines):
            try:
                with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                    warnings.simplefilter("ignore")
                    exec(compile(call, f"{page}:{lineno}", "exec"), namespace)
            except Exception as exc:
                raise DocsBlockError(f"{page.name}: the table call `{call}` (line {lineno}) raised "
                                     f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}") from exc
        for name in IMAGE.findall("".join(lines)):
            if (workdir / name).exists():
                run.images[name] = workdir / name
    finally:
        os.chdir(old_cwd)
        _close_figures()
        for name, value in saved_options.items():
            pd.set_option(name, value)
        if multilevel.get_num_threads() != threads:
            multilevel.set_num_threads(threads)
    return run


def rendered(lines: list[str], outputs: list[str]) -> str:
    """The page with each python block's output block replaced (or added, or removed when it prints nothing)."""
    blocks = python_blocks(lines)
    out, pos = [], 0
    for pb, text in zip(blocks, outputs):
        out.extend(lines[pos:pb.block.end])
        pos = pb.block.end if pb.output is None else pb.output.end
        if text.strip():
            body = "\n".join(s.rstrip() for s in text.rstrip("\n").split("\n"))
            out.append("\n```text\n" + body + "\n```\n")
    out.extend(lines[pos:])
    return "".join(out)


def pages(args: list[str]) -> list[Path]:
    if args:
        return [Path(a).resolve() for a in args]
    return sorted(p for p in DOCS.glob("*.md"))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for page in pages([a for a in argv if a != "--check"]):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                run = run_page(page, Path(tmp))
            except DocsBlockError as err:
                print(err, file=sys.stderr)
                return 1
            lines = page.read_text().splitlines(keepends=True)
            new = rendered(lines, run.outputs)
            if check:
                if new != "".join(lines):
                    stale.append(page.name)
                continue
            if new != "".join(lines):
                page.write_text(new)
                print(f"rewrote {page.relative_to(DOCS.parent)}")
            for name, path in run.images.items():
                (DOCS / "images").mkdir(exist_ok=True)
                shutil.copyfile(path, DOCS / "images" / name)
                print(f"wrote docs/images/{name}")
    if stale:
        print("outputs differ from a fresh run:", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
