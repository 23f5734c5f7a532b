"""README.md and docs/ as a user reads them: every code block runs as pasted (the two install
commands are run verbatim by .ci/run, which takes them from the README; a block a test cannot
run says why in a `<!-- docs-test: skip (why) -->` line above it), the generated tables are
those of the committed results, and the pages describe fastrnn, not the project's history."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"(?:<!-- (ci|docs-test): ([^>]*?) -->\n)?([ \t]*)```(\w+)\n(.*?)```", re.S)
CI_COMMANDS = {"main-command", "test-command"}


def blocks(page: Path):
    """(marker kind, marker text, language, code) of each fenced block, de-indented."""
    found = []
    for m in BLOCK.finditer(page.read_text()):
        indent = m.group(3)
        code = "\n".join(line[len(indent):] if line.startswith(indent) else line
                         for line in m.group(5).split("\n"))
        found.append((m.group(1), m.group(2), m.group(4), code))
    return found


BLOCKS = [(text if kind == "ci" else None, lang, code) for kind, text, lang, code in
          blocks(ROOT / "README.md")]
RUNNABLE = [(page, i) for page in PAGES for i, (kind, _, lang, _) in enumerate(blocks(page))
            if kind is None and lang in ("python", "bash")]
SKIPPED = [(page, text) for page in PAGES for kind, text, _, _ in blocks(page)
           if kind == "docs-test"]


def test_readme_is_short_and_has_the_two_ci_commands():
    assert len(README.encode()) < 8 * 1024
    marked = {ci for ci, _, _ in BLOCKS if ci}
    assert marked == CI_COMMANDS
    ci_script = (ROOT / ".ci" / "run").read_text()
    for name in CI_COMMANDS:  # .ci/run extracts each by its marker and runs it verbatim
        assert f"readme_command {name}" in ci_script


@pytest.mark.parametrize("page,index", RUNNABLE,
                         ids=[f"{page.name}-{i}" for page, i in RUNNABLE])
def test_code_block_runs_as_pasted(page, index, tmp_path):
    _, _, lang, code = blocks(page)[index]
    if "libasan" in os.environ.get("LD_PRELOAD", "") and "train" in code:
        pytest.skip("a training run under ASan takes minutes; its kernels are tested anyway")
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "XDG_CACHE_HOME": str(tmp_path)}  # a user's fresh cache folder
    args = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail",
                                                                  "-c", code]
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("page,why", SKIPPED, ids=[p.name for p, _ in SKIPPED])
def test_a_block_no_test_runs_says_why(page, why):
    assert re.fullmatch(r"skip \(.{10,}\)", why), f"{page.name}: {why!r}"


# What a page for users does not hold: issue numbers, the sessions or numbered runs of the
# project's own work, its to-do list.
HISTORY = re.compile(r"\bissues? #?\d+|\bsessions?\b|\b(?:first|second|third|fourth|fifth|"
                     r"sixth|seventh|eighth|ninth|tenth|eleventh|twelfth) (?:run|session)s?\b|"
                     r"\bnot (?:there|done) yet\b|\bshared/data\b", re.I)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_pages_describe_fastrnn_not_its_history(page):
    found = [(n, line.strip()) for n, line in enumerate(page.read_text().splitlines(), 1)
             if HISTORY.search(line)]
    assert not found, f"{page.name} narrates the project's history: {found[:5]}"


def test_generated_tables_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "docs_tables.py"),
                             "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docs_links_resolve():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
