"""fastrnn.agnews's command line on ordinary mistakes: every one ends in
``error: ...`` on stderr naming the argument or file and what is expected, exit
status 2, no traceback, and no folder created, before any work is lost."""
import csv
import os
import re
import subprocess
import sys

import pytest
import torch

from fastrnn.agnews import cli, data, training

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI = os.path.join(REPO, "..", "shared", "data", "ag_news_mini")
CLOSED_URL = "http://127.0.0.1:9/"  # nothing listens on the discard port: "no network"
TINY = ["--limit", "8", "--epochs", "1", "--batch-size", "8", "--embed-dim", "4",
        "--hidden-dim", "4", "--no-progress", "--no-download"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No user data folder, a private cache folder, and no network."""
    monkeypatch.delenv(data.DIR_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv(data.URL_ENV, CLOSED_URL)


def write_rows(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return str(path)


def good_rows(n):
    words = ["war troops", "match goal", "shares bank", "chip software"]
    return [[str(i % 4 + 1), f"Headline {i}", f"{words[i % 4]} today."] for i in range(n)]


@pytest.fixture
def folder(tmp_path):
    """A data folder with a small valid train.csv and test.csv."""
    d = tmp_path / "agnews"
    d.mkdir()
    write_rows(d / "train.csv", good_rows(16))
    write_rows(d / "test.csv", good_rows(8))
    return d


def fails(argv, capsys, *expected):
    """main(argv) ends with exit status 2 and every ``expected`` piece in stderr
    (argparse errors raise SystemExit(2); runtime errors return 2)."""
    try:
        code = cli.main(argv)
    except SystemExit as exit:
        code = exit.code
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "error: " in err and "Traceback" not in out + err
    for piece in expected:
        assert piece in err, (piece, err)
    return err


# ---------------------------------------------------------------- numbers, device, paths


@pytest.mark.parametrize("option, value, expected", [
    ("--epochs", "0", "1 or more, got 0"),
    ("--epochs", "two", "1 or more, got 'two'"),
    ("--batch-size", "0", "1 or more"),
    ("--batch-size", "-1", "1 or more, got -1"),
    ("--limit", "0", "1 or more"),
    ("--hidden-dim", "0", "1 or more"),
    ("--embed-dim", "-4", "1 or more"),
    ("--min-freq", "0", "1 or more"),
    ("--threads", "-3", "1 or more"),
    ("--lr", "-1", "finite number above 0"),
    ("--lr", "0", "finite number above 0"),
    ("--lr", "nan", "finite number above 0"),
    ("--lr", "inf", "finite number above 0"),
    ("--seed", "-1", "0..4294967295"),
    ("--device", "gpu", "'gpu' is not a device; use one of: cpu"),
    ("--device", "CPU", "is not a device"),
    ("--device", "meta", "not supported"),
    ("--weight-drop", "1", "probability in [0, 1), got '1'"),
    ("--zoneout", "-0.1", "probability in [0, 1)"),
    ("--zoneout", "half", "probability in [0, 1), got 'half'"),
])
def test_bad_numbers_and_devices(option, value, expected, folder, capsys):
    err = fails(["train", "--data-dir", str(folder), option, value], capsys,
                f"argument {option}: ", expected)
    assert "usage:" in err


@pytest.mark.parametrize("argv, option, expected", [
    (["train", "--model", "lnlstm-packed", "--backend", "torch"], "--model",
     "lnlstm-packed has no torch.nn version"),
    (["compare", "--model", "lnlstm-packed"], "--model", "lnlstm-packed has no torch.nn version"),
    (["train", "--weight-drop", "0.5", "--backend", "torch"], "--weight-drop",
     "torch.nn has no such option"),
    (["compare", "--zoneout", "0.1"], "--zoneout", "torch.nn has no such option"),
])
def test_fastrnn_only_models_and_options(argv, option, expected, folder, capsys):
    fails(argv + ["--data-dir", str(folder)], capsys, f"argument {option}: ", expected)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:7", "mps", "xpu"])
def test_unavailable_device(device, folder, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(torch.xpu, "is_available", lambda: False)
    fails(["train", "--data-dir", str(folder), "--device", device], capsys,
          "argument --device", "not available", "devices here: cpu")


def test_cuda_index_beyond_the_machine(folder, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    fails(["train", "--data-dir", str(folder), "--device", "cuda:3"], capsys,
          "'cuda:3': this machine has 1 CUDA device(s)", "cuda:0")


def test_device_checked_before_data_is_read(tmp_path, capsys):
    """Even with no data anywhere, the device error comes first (and nothing is created)."""
    fails(["train", "--device", "gpu"], capsys, "argument --device")
    assert not (tmp_path / "xdg-cache").exists()


def test_data_dir_missing_is_not_created(tmp_path, capsys):
    missing = tmp_path / "no" / "such"
    fails(["train", "--data-dir", str(missing)], capsys,
          f"argument --data-dir: {missing}: no such folder", "train.csv")
    assert not (tmp_path / "no").exists()


def test_data_dir_names_a_file(folder, capsys):
    fails(["train", "--data-dir", str(folder / "train.csv")], capsys,
          "is a file, not a folder", f"(here: {folder})")
    fails(["evaluate", str(folder / "train.csv"), "--data-dir", ""], capsys,
          "argument --data-dir: empty path")


def test_env_folder_must_exist(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.DIR_ENV, str(tmp_path / "nowhere"))
    fails(["train"], capsys, "$FASTRNN_AG_NEWS_DIR", "nowhere: no such folder", "train.csv")
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv(data.DIR_ENV, str(tmp_path / "file"))
    fails(["compare"], capsys, "$FASTRNN_AG_NEWS_DIR", "is a file, not a folder")


@pytest.mark.parametrize("option", ["--json", "--out"])
def test_output_paths(option, folder, tmp_path, capsys):
    fails(["train", "--data-dir", str(folder), option, str(tmp_path)], capsys,
          f"argument {option}: ", "is a folder; give a file name")
    fails(["train", "--data-dir", str(folder), option, str(folder / "train.csv" / "m")], capsys,
          "train.csv is a file, not a folder")


def test_write_failure_after_training(folder, tmp_path, capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.json, "dump", full)
    target = tmp_path / "new" / "m.json"
    fails(["train", "--data-dir", str(folder), *TINY, "--json", str(target)], capsys,
          f"error: cannot write {target}: No space left on device")


def test_plot_without_matplotlib_fails_before_training(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    fails(["compare", "--data-dir", str(folder), "--plot", str(tmp_path / "c.png")], capsys,
          "argument --plot: needs matplotlib", "pip install matplotlib")


def test_plot_format(folder, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    fails(["compare", "--data-dir", str(folder), "--plot", str(tmp_path / "c.xyz")], capsys,
          "cannot write .xyz files", "png")


def test_batch_size_divisible_by_processes(folder, capsys, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    fails(["train", "--data-dir", str(folder)], capsys,
          "argument --batch-size: 16", "divisible by the number of processes (3)")
    fails(["train", "--data-dir", str(folder), "--batch-size", "3", "--sparse-embedding"], capsys,
          "argument --sparse-embedding: runs in one process only")


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["train", "--help"])
    assert exit.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for piece in ["(default: 16)", "(default: 0.001)", "(default: lstm-packed)",
                  "(default: fastrnn)", "(default: cpu)", "(default: 0)",
                  "--limit N use the first N training rows (default: all)",
                  "$FASTRNN_AG_NEWS_DIR if set"]:
        assert piece in out, piece
    assert "(default: None)" not in out and "(default: False)" not in out


# ---------------------------------------------------------------- data files


def test_no_data_no_network_trains_on_the_embedded_sample(tmp_path, capsys):
    """The default folder (the cache) and a download that fails: one note saying so and where
    the full set goes, then training on the sample shipped with the package."""
    assert cli.main(["train", "--no-progress", "--embed-dim", "8", "--hidden-dim", "8"]) == 0
    out, err = capsys.readouterr()
    cache = tmp_path / "xdg-cache" / "fastrnn" / "ag_news"
    notes = [line for line in err.splitlines() if line]
    assert len(notes) == 1 and notes[0].startswith("note: AG News could not be downloaded")
    assert "sample shipped with fastrnn" in notes[0] and str(cache) in notes[0]
    assert "AG News: 6080 training rows, 1520 test rows" in out
    assert re.search(r"^done: train acc 0\.\d+, test acc 0\.\d+", out, re.M)
    assert os.listdir(cache) == []  # no partial file of the failed download


def test_no_download_and_named_folders_never_fall_back_to_the_sample(tmp_path, capsys):
    fails(["train", "--no-progress", "--no-download"], capsys, "train.csv does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(["train", "--no-progress", "--data-dir", str(empty)], capsys, "could not download")


def test_output_checked_before_training(folder, capsys, monkeypatch):
    """A path no file can be written to (here /proc, where access() says yes to root) fails
    before any data is read or model trained."""
    monkeypatch.setattr(cli, "train", lambda *a, **k: pytest.fail("trained anyway"))
    for option in ("--out", "--json"):
        fails(["train", "--data-dir", str(folder), option, "/proc/fastrnn-model.pt"], capsys,
              f"argument {option}: cannot write /proc/fastrnn-model.pt")


def test_sizes_beyond_any_model(folder, capsys):
    fails(["train", "--data-dir", str(folder), "--batch-size", str(2 ** 70)], capsys,
          "argument --batch-size: expected a whole number up to 2147483647")
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # ASan aborts on a failed malloc
        fails(["train", "--data-dir", str(folder), *TINY, "--hidden-dim", "100000",
               "--embed-dim", "100000"], capsys,
              "error: not enough memory for this model and batch", "--hidden-dim")


def test_out_of_memory_is_one_error_line(folder, capsys, monkeypatch):
    def too_big(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 160000000000 bytes.")

    monkeypatch.setattr(cli, "train", too_big)
    fails(["train", "--data-dir", str(folder), *TINY], capsys,
          "error: not enough memory for this model and batch", "try a smaller --hidden-dim")


def test_plot_without_extension_names_the_png_it_writes(folder, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    target = tmp_path / "curves"
    assert cli.main(["compare", "--data-dir", str(folder), *TINY, "--plot", str(target)]) == 0
    out = capsys.readouterr().out
    assert f"saved {target}.png" in out and (tmp_path / "curves.png").exists()


def test_compare_names_threads_load_and_backends(folder, capsys):
    assert cli.main(["compare", "--data-dir", str(folder), *TINY, "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^1 torch thread\(s\), load average [\d.]+ on \d+ cores", out, re.M)
    assert re.search(r"^\[torch\] epoch 1: ", out, re.M)
    assert re.search(r"^\[fastrnn\] epoch 1: ", out, re.M)


def test_layer_norm_checkpoint_with_backend_torch(folder, tmp_path, capsys):
    path = tmp_path / "ln.pt"
    assert cli.main(["train", "--data-dir", str(folder), *TINY, "--model", "lnlstm-packed",
                     "--out", str(path)]) == 0
    capsys.readouterr()
    err = fails(["evaluate", str(path), "--backend", "torch", "--data-dir", str(folder)], capsys,
                "holds a lnlstm-packed model, which torch.nn has no module for",
                "leave --backend out")
    assert "damaged" not in err


def test_missing_files_in_a_given_folder(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(["train", "--data-dir", str(empty), "--no-download"], capsys,
          f"{empty / 'train.csv'} does not exist", "Put AG News's train.csv and test.csv")
    fails(["train", "--data-dir", str(empty), "--no-progress"], capsys,
          "could not download", str(empty))
    assert os.listdir(empty) == []


@pytest.mark.parametrize("content, expected", [
    ('"1","a","b"\n"2","only two"\n', "train.csv, line 2: 2 field(s), expected 3"),
    ('"1","a","b","c"\n', "line 1: 4 field(s), expected 3"),
    ('"1","a","b"\n"5","a","b"\n', "line 2: the label must be 1..4"),
    ('"0","a","b"\n', "line 1: the label must be 1..4"),
    ('"Class Index","Title","Description"\n"1","a","b"\n', "line 1: the label must be 1..4"),
    ('"","a","b"\n', "line 1: the label must be 1..4"),
    ('"1","a","b"\n\n"2","c","d"\n', "line 2: empty line"),
    ('"1","a","b"\n"2"," ",""\n', "line 2: empty title and description"),
    ('', "holds no rows"),
    # cut short inside a quoted field
    ('"1","a","b"\n"2","Oil prices sur', "line 2: malformed CSV row (unexpected end of data"),
    # cut short right after a comma
    ('"1","a","b"\n"2","Oil prices",', "line 2: the file ends mid-row"),
    # a dropped closing quote merges two rows: caught where the next row's quote follows
    ('"1","a","b\n"2","c","d"\n"3","e","f"\n', "line 1: malformed CSV row"),
    ('"1","a","b"\n"2","c,"d"\n"3","e","f"\n', "line 2: malformed CSV row"),
    ('"1","a","b\n"2","c","d"\n', "a missing closing quote that merges rows"),
    ('"1","a","b"\n"2","c","d\x00\x00"\n', "line 2: a NUL character"),
])
def test_malformed_train_csv(content, expected, folder, capsys):
    (folder / "train.csv").write_text(content, encoding="utf-8")
    err = fails(["train", "--data-dir", str(folder), *TINY], capsys, expected)
    assert str(folder / "train.csv") in err and "usage:" not in err


def test_malformed_test_csv_is_named(folder, capsys):
    (folder / "test.csv").write_text('"1","a","b"\n"9","x","y"\n', encoding="utf-8")
    fails(["train", "--data-dir", str(folder), *TINY], capsys,
          f"{folder / 'test.csv'}, line 2: the label must be 1..4")


def test_unreadable_files(folder, capsys):
    (folder / "train.csv").write_bytes(b'"1","a","\xff\xfe"\n')
    fails(["train", "--data-dir", str(folder), *TINY], capsys,
          f"cannot read {folder / 'train.csv'}", "utf-8")
    (folder / "train.csv").unlink()
    (folder / "train.csv").mkdir()
    fails(["train", "--data-dir", str(folder), *TINY], capsys,
          f"{folder / 'train.csv'} is a folder, not a CSV file")


def test_bom_crlf_and_multiline_fields_are_fine(folder, capsys):
    rows = good_rows(16)
    rows[3][2] = "two\nlines"
    with open(folder / "train.csv", "w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    labels, texts = data.read_csv(str(folder / "train.csv"))
    assert labels[:4] == [0, 1, 2, 3] and texts[3] == "Headline 3 two\nlines"
    # no newline after the last row is fine when its last field is quoted
    (folder / "test.csv").write_text('"1","a","b"\n"2","c","d"', encoding="utf-8")
    assert data.read_csv(str(folder / "test.csv"))[0] == [0, 1]
    assert cli.main(["train", "--data-dir", str(folder), *TINY]) == 0


def test_min_freq_that_keeps_nothing_warns(folder, capsys):
    assert cli.main(["train", "--data-dir", str(folder), *TINY, "--min-freq", "1000"]) == 0
    assert "warning: --min-freq 1000 keeps no token" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.exists(os.path.join(MINI, "test.csv")),
                    reason="../shared/data/ag_news_mini not present")
def test_real_files_pass_the_strict_reader():
    for name in ("train.csv", "test.csv"):
        labels, _ = data.read_csv(os.path.join(MINI, name))
        assert len(labels) == {"train.csv": 6080, "test.csv": 1520}[name]


# ---------------------------------------------------------------- checkpoints


@pytest.fixture
def trained(folder, tmp_path, capsys, monkeypatch):
    """(checkpoint path, data folder) of a tiny model."""
    path = tmp_path / "m.pt"
    monkeypatch.chdir(tmp_path)  # a relative --data-dir is recorded absolute
    assert cli.main(["train", "--data-dir", folder.name, *TINY, "--out", str(path)]) == 0
    capsys.readouterr()
    return path, folder


def test_checkpoint_missing_or_folder(tmp_path, capsys):
    fails(["evaluate", str(tmp_path / "none.pt")], capsys,
          "argument checkpoint: ", "none.pt: no such file", "train --out")
    fails(["predict", str(tmp_path), "Oil prices surge"], capsys,
          "argument checkpoint: ", "is a folder")


def _variants(good, tmp_path):
    state = torch.load(good, weights_only=True)
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a checkpoint\n")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    other = tmp_path / "other.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, other)
    newer = tmp_path / "newer.pt"
    torch.save({**state, "format": "fastrnn.agnews/2"}, newer)
    no_weights = tmp_path / "no_weights.pt"
    torch.save({k: v for k, v in state.items() if k != "state_dict"}, no_weights)
    mismatch = tmp_path / "mismatch.pt"
    torch.save({**state, "config": {**state["config"], "hidden_dim": 7}}, mismatch)
    bad_model = tmp_path / "bad_model.pt"
    torch.save({**state, "config": {**state["config"], "model": "transformer"}}, bad_model)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "fastrnn.agnews/1", "x": training.TrainConfig()}, pickled)
    return [
        (text, "a text file (it begins 'hello, not a checkpoint'), not a torch file",
         "give a checkpoint written by train --out"),
        (truncated, "not a checkpoint written by train --out: a truncated or damaged torch file",
         ""),
        (empty, "an empty file, not a checkpoint written by train --out", ""),
        (tensor, "a torch file, but not a fastrnn.agnews checkpoint", "got a Tensor"),
        (other, "not a fastrnn.agnews checkpoint", "got keys model"),
        (newer, "checkpoint format 'fastrnn.agnews/2'", "reads 'fastrnn.agnews/1'"),
        (no_weights, "a damaged fastrnn.agnews checkpoint: no state_dict", ""),
        (mismatch, "a damaged fastrnn.agnews checkpoint", "size mismatch"),
        (bad_model, "a damaged fastrnn.agnews checkpoint", "transformer"),
        (pickled, "not a checkpoint written by train --out: it holds Python objects", ""),
    ]


def test_bad_checkpoints(trained, tmp_path, capsys):
    good, folder = trained
    for path, *expected in _variants(good, tmp_path):
        for argv in (["evaluate", str(path), "--data-dir", str(folder), "--no-download"],
                     ["predict", str(path), "Oil prices surge"]):
            err = fails(argv, capsys, f"error: {path}: ", *expected)
            assert "usage:" not in err
    # the API raises CheckpointError (a ValueError), naming the file
    with pytest.raises(training.CheckpointError, match="notes.txt: a text file"):
        training.load_checkpoint(str(tmp_path / "notes.txt"))


def test_evaluate_uses_the_recorded_folder(trained, tmp_path, capsys, monkeypatch):
    good, folder = trained
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # trained with a relative --data-dir
    assert cli.main(["evaluate", str(good), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"test split from {folder} (the folder recorded in the checkpoint" in out
    assert f"on {folder / 'test.csv'}: accuracy" in out
    # --data-dir overrides it
    other = tmp_path / "other"
    other.mkdir()
    write_rows(other / "test.csv", good_rows(4))
    assert cli.main(["evaluate", str(good), "--data-dir", str(other)]) == 0
    out = capsys.readouterr().out
    assert f"test split from {other} (--data-dir)" in out and "(4 rows)" in out
    # a recorded folder that is gone: an error that says to give --data-dir
    (folder / "test.csv").unlink()
    (folder / "train.csv").unlink()
    folder.rmdir()
    fails(["evaluate", str(good)], capsys, f"was trained on {folder}", "--data-dir")
    assert not folder.exists()


def test_evaluate_without_a_recorded_folder(trained, tmp_path, capsys, monkeypatch):
    """A checkpoint that records no folder (trained on the default one): evaluate reads
    $FASTRNN_AG_NEWS_DIR, which must exist, else the cache folder."""
    good, folder = trained
    state = torch.load(good, weights_only=True)
    state["config"]["data_dir"] = None
    torch.save(state, good)
    monkeypatch.setenv(data.DIR_ENV, str(folder))
    assert cli.main(["evaluate", str(good)]) == 0
    assert f"test split from {folder} ($FASTRNN_AG_NEWS_DIR)" in capsys.readouterr().out
    monkeypatch.setenv(data.DIR_ENV, str(tmp_path / "gone"))
    fails(["evaluate", str(good)], capsys, f"$FASTRNN_AG_NEWS_DIR {tmp_path / 'gone'}: no such")
    assert not (tmp_path / "gone").exists()
    monkeypatch.delenv(data.DIR_ENV)
    fails(["evaluate", str(good), "--no-progress", "--no-download"], capsys,
          "test.csv does not exist")
    # the default folder, offline: the embedded sample's test split, with its note
    assert cli.main(["evaluate", str(good), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert err.startswith("note: AG News could not be downloaded") and "(1520 rows)" in out


def test_predict_texts(trained, capsys):
    good, _ = trained
    fails(["predict", str(good), ""], capsys, "argument text: text is empty")
    fails(["predict", str(good), "Oil prices", "  \t "], capsys, "argument text: text 2 is empty")
    fails(["predict", str(good), '"";:'], capsys, "has no words")
    assert cli.main(["predict", str(good), "zyzzyva quux"]) == 0
    out, err = capsys.readouterr()
    assert "warning: no word of 'zyzzyva quux' is in the checkpoint's vocabulary" in err
    assert "zyzzyva quux" in out
    assert cli.main(["predict", str(good), "goal match today"]) == 0
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- exit statuses


def test_keyboard_interrupt_exits_130_quietly(folder, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_train", interrupted)
    assert cli.main(["train", "--data-dir", str(folder)]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_real_entry_point_no_traceback(tmp_path):
    """``python -m fastrnn.agnews`` itself: exit status 2, one error line, no traceback."""
    (tmp_path / "notes.txt").write_text("hello\n")
    env = {k: v for k, v in os.environ.items() if k != data.DIR_ENV}
    for argv, expected in [(["train", "--epochs", "0"], "argument --epochs"),
                           (["predict", "notes.txt", "Oil prices"], "notes.txt: a text file")]:
        run = subprocess.run([sys.executable, "-m", "fastrnn.agnews", *argv], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=120)
        assert run.returncode == 2, run.stderr
        assert expected in run.stderr and "Traceback" not in run.stderr


def test_progress_bar_ends_on_the_epoch_line_values(folder, capsys):
    assert cli.main(["train", "--data-dir", str(folder), *[a for a in TINY if a != "--no-progress"],
                     "--batch-size", "4"]) == 0
    out, err = capsys.readouterr()
    line = re.search(r"train loss (\d\.\d{4})  train acc (\d\.\d{4})", out)
    bars = re.findall(r"acc=(\d\.\d{4}), loss=(\d\.\d{4})", err)
    assert line and bars, (out, err)
    assert bars[-1] == (line.group(2), line.group(1))
