"""What a new user meets first: `python -m fastrnn`, importing from the repository root, and
the message when the compiled extension is missing."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

import fastrnn
from fastrnn import info

ROOT = Path(__file__).resolve().parents[1]


def run(args, cwd, **env):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_python_m_fastrnn_describes_the_build():
    result = run(["-m", "fastrnn"], ROOT)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"fastrnn {fastrnn.__version__}" in text
    assert f"runs with {torch.__version__}" in text and "built against" in text
    assert "AVX2+FMA" in text and "AVX-512" in text and "CUDA kernels" in text
    assert ("GPU: none visible" in text) != torch.cuda.is_available()
    if torch.cuda.is_available() and info.build_info()["cuda"] == "1":
        assert "lstm" in text and ("persistent" in text or "per_step" in text)


def test_build_info_matches_this_build():
    built = info.build_info()
    assert built["torch"] == torch.__version__.split("+")[0]
    assert built["cuda"] in ("0", "1") and built["avx2"] in ("0", "1")
    if torch.version.cuda is None:
        assert built["cuda"] == "0"  # a CPU-only torch never gets CUDA kernels


def test_import_and_cli_work_from_the_repository_root():
    # The checkout's fastrnn/ comes first on sys.path there: it must be the built package.
    result = run(["-c", "import fastrnn, sys; print(fastrnn.__file__)"], ROOT)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).parent == ROOT / "fastrnn"
    result = run(["-m", "fastrnn.agnews", "--help"], ROOT)
    assert result.returncode == 0 and "train" in result.stdout, result.stderr


def test_missing_extension_says_what_to_run(tmp_path):
    # A source tree without the built fastrnn._C (e.g. a fresh clone before installing).
    shutil.copytree(ROOT / "fastrnn", tmp_path / "fastrnn",
                    ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    # An installed fastrnn (editable or not) must not supply the missing module.
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path "
            "if '__editable__' not in repr(f)]; "
            "sys.path[:] = [p for p in sys.path if 'site-packages' not in p or "
            "__import__('os').path.isdir(p + '/torch')]; import fastrnn")
    result = run(["-c", code], tmp_path)
    assert result.returncode != 0
    assert "circular import" not in result.stderr
    assert "fastrnn._C could not be loaded" in result.stderr
    assert f"pip install --force-reinstall --no-deps --no-cache-dir -e {tmp_path}" \
        in result.stderr
