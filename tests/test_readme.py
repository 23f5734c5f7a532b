"""README.md as a user reads it: every code block runs as written (the two install commands
are run verbatim by .ci/run, which takes them from the README), and the generated tables in
README.md and docs/ are those of the committed results."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- ci: ([\w-]+) -->\n)?```(\w+)\n(.*?)```", re.S)
BLOCKS = [(m.group(1), m.group(2), m.group(3)) for m in BLOCK.finditer(README)]
CI_COMMANDS = {"main-command", "test-command"}


def test_readme_is_short_and_has_the_two_ci_commands():
    assert len(README.encode()) < 8 * 1024
    marked = {ci for ci, _, _ in BLOCKS if ci}
    assert marked == CI_COMMANDS
    ci_script = (ROOT / ".ci" / "run").read_text()
    for name in CI_COMMANDS:  # .ci/run extracts each by its marker and runs it verbatim
        assert f"readme_command {name}" in ci_script


@pytest.mark.parametrize("index", [i for i, (ci, lang, _) in enumerate(BLOCKS)
                                   if lang == "python"])
def test_readme_python_block_runs(index):
    code = BLOCKS[index][2]
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("index", [i for i, (ci, lang, _) in enumerate(BLOCKS)
                                   if lang == "bash" and not ci])
def test_readme_shell_block_runs(index):
    code = BLOCKS[index][2]
    if "libasan" in os.environ.get("LD_PRELOAD", "") and "train" in code:
        pytest.skip("a training run under ASan takes minutes; its kernels are tested anyway")
    for folder in re.findall(r"--data-dir (\S+)", code):
        if not (ROOT / folder).is_dir():
            pytest.skip(f"{folder} is not on this machine")
    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_generated_tables_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "docs_tables.py"),
                             "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docs_links_resolve():
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", doc.read_text()):
            assert (doc.parent / target).exists(), f"{doc.name} links to missing {target}"
