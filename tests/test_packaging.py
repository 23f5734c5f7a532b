"""How fastrnn installs: static metadata, the build backend that finds the target
environment's torch inside an isolated build, the refusal of a build for another torch, the
editable install that the clone's own folder cannot shadow, and the embedded AG News sample.
(.ci/run runs the real `pip install .` and `python -m build` in fresh venvs.)"""
import glob
import hashlib
import lzma
import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import torch

import fastrnn
from fastrnn import _extension
from fastrnn.agnews import data

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_metadata_is_static():
    project = PYPROJECT["project"]
    assert "dynamic" not in project
    assert project["name"] == "fastrnn" and project["requires-python"]
    assert project["version"] == fastrnn.__version__
    names = {dep.split(">")[0].split("=")[0].strip() for dep in project["dependencies"]}
    assert {"torch", "numpy", "tqdm"} <= names
    assert "torch" not in " ".join(PYPROJECT["build-system"]["requires"])


def _backend(code, python=sys.executable, **env_changes):
    env = {**os.environ, **env_changes}
    for name in [k for k, v in env_changes.items() if v is None]:
        env.pop(name)
    return subprocess.run([python, "-c", "import sys; sys.path.insert(0, 'build_backend'); "
                           "import torch_aware_backend as backend; " + code],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_backend_finds_the_target_torch_from_an_isolated_build():
    # pip's isolated build: the target interpreter with site-packages hidden (its overlay).
    code = ("sys.path[:] = [p for p in sys.path if 'site-packages' not in p]; "
            "print(backend._torch_folder())")
    run = _backend(code, PYTHONNOUSERSITE="1")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == os.path.dirname(os.path.dirname(torch.__file__))


def test_backend_without_any_torch_says_so_in_one_line():
    base = getattr(sys, "_base_executable", None)
    probe = subprocess.run([base or "", "-c", "import setuptools; import torch"],
                           capture_output=True) if base and os.path.exists(base) else None
    if probe is None or probe.returncode == 0 or b"setuptools" in probe.stderr:
        pytest.skip("needs a base Python with setuptools and without torch")
    run = _backend("backend.get_requires_for_build_wheel()", python=base, VIRTUAL_ENV=None,
                   CONDA_PREFIX=None, PYTHONPATH=None)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastrnn: no torch found for"), run.stderr
    assert "install torch first" in lines[0]


def test_setup_sources_are_globbed():
    sys.path.insert(0, str(ROOT))
    try:
        text = (ROOT / "setup.py").read_text()
        assert 'sources_matching("csrc/*.cpp", "csrc/cpu/*.cpp")' in text
        assert 'sources_matching("csrc/cuda/*.cu")' in text
    finally:
        sys.path.remove(str(ROOT))
    manifest = (ROOT / "MANIFEST.in").read_text()
    for needed in ("csrc", "build_backend", "fastrnn/agnews/sample"):
        assert needed in manifest


def test_a_build_for_another_torch_is_refused_with_the_command():
    built = _extension.build_record()["torch"]
    assert built == torch.__version__.split("+")[0]
    with pytest.raises(ImportError) as error:
        _extension.refuse_other_torch("1.0.0")
    message = str(error.value)
    assert "built against torch 1.0.0" in message and torch.__version__ in message
    assert _extension.reinstall_command() in message
    assert "--no-cache-dir" in _extension.reinstall_command()


def _editable_pth():
    found = glob.glob(os.path.join(sysconfig.get_paths()["purelib"], "__editable__.fastrnn*.pth"))
    return found[0] if found else None


def test_editable_install_is_a_path_entry_the_clone_cannot_shadow(tmp_path):
    pth = _editable_pth()
    if pth is None:
        pytest.skip("fastrnn is not installed in editable mode here")
    assert Path(open(pth).read().strip()).resolve() == ROOT
    assert _extension.reinstall_command().endswith(f"-e {ROOT}")
    # A script run from the folder that holds the clone, named fastrnn as git names it.
    (tmp_path / "fastrnn").symlink_to(ROOT, target_is_directory=True)
    run = subprocess.run([sys.executable, "-c", "import fastrnn; print(fastrnn.LSTM.__name__)"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "LSTM", run.stderr


def test_embedded_sample_is_the_canonical_test_split():
    assert os.path.getsize(data.SAMPLE) <= 1024 * 1024
    with lzma.open(data.SAMPLE) as f:
        assert hashlib.md5(f.read()).hexdigest() == data.MD5["test.csv"]
    readme = (Path(data.SAMPLE).parent / "README.md").read_text()
    assert data.MD5["test.csv"] in readme and all(m in readme for m in data.SAMPLE_MD5.values())


def test_sample_split_matches_the_shared_mini_split(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = data.sample_data_dir()
    for name, md5 in data.SAMPLE_MD5.items():
        assert hashlib.md5(open(os.path.join(folder, name), "rb").read()).hexdigest() == md5
    labels, _ = data.read_csv(os.path.join(folder, "train.csv"))
    assert len(labels) == 6080 and sorted(set(labels)) == [0, 1, 2, 3]
    mini = ROOT.parent / "shared" / "data" / "ag_news_mini"
    if mini.is_dir():  # the split kept beside the repository is the same, byte for byte
        for name in data.SAMPLE_MD5:
            assert (mini / name).read_bytes() == open(os.path.join(folder, name), "rb").read()


def test_sample_is_used_only_when_the_default_folder_cannot_be_filled(tmp_path, monkeypatch,
                                                                      capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(data.DIR_ENV, raising=False)
    monkeypatch.setenv(data.URL_ENV, "http://127.0.0.1:9/")
    paths = data.ensure_files(progress=False)
    assert Path(paths["train"]).parent == tmp_path / "fastrnn" / "ag_news_sample"
    assert "note: AG News could not be downloaded" in capsys.readouterr().err
    with pytest.raises(data.DataError, match="does not exist"):
        data.ensure_files(allow_download=False)
    with pytest.raises(data.DataError, match="could not download"):
        data.ensure_files(str(tmp_path / "mine"), progress=False)
    # the full set, once in the cache folder, is what is read
    full = tmp_path / "fastrnn" / "ag_news"
    for name in ("train.csv", "test.csv"):
        (full / name).write_bytes(open(paths["test"], "rb").read())
    assert Path(data.ensure_files(progress=False)["train"]).parent == full
