"""fastrnn.agnews: tokenizer, vocabulary, CSV, download, models on both backends,
checkpoints, the command line, DDP, and a short run on real AG News rows."""
import csv
import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest
import torch

from fastrnn.agnews import data, text, training
from fastrnn.agnews.cli import main
from fastrnn import reference
from fastrnn.agnews.models import FASTRNN_ONLY_MODES, MODELS, build_model

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI = os.path.join(REPO, "..", "shared", "data", "ag_news_mini")

# ---------------------------------------------------------------- tokenizer, vocabulary


@pytest.mark.parametrize("line, tokens", [
    ("Hello World", ["hello", "world"]),
    ("Don't stop!", ["don", "'", "t", "stop", "!"]),
    ('He said "yes": fine; ok?', ["he", "said", "yes", "fine", "ok", "?"]),
    ("U.S. (AP) - 3.5%, up", ["u", ".", "s", ".", "(", "ap", ")", "-", "3", ".", "5%", ",", "up"]),
    ("line<br />break<BR />x", ["line", "break", "x"]),
    ("tabs\tand\nnewlines   spaces", ["tabs", "and", "newlines", "spaces"]),
    ("second\\team  #36;10 million", ["second\\team", "#36", "10", "million"]),
    ("&lt;b&gt;Ready?!", ["&lt", "b&gt", "ready", "?", "!"]),
    ("", []),
    ("...", [".", ".", "."]),
    ("Caf\u00e9 \u00dcBER-Fast", ["caf\u00e9", "\u00fcber-fast"]),
])
def test_basic_english(line, tokens):
    assert text.basic_english(line) == tokens


def test_vocab_order_specials_min_freq_and_round_trip():
    docs = [["b", "a", "c"], ["a", "b"], ["a", "d"]]
    vocab = text.Vocab.build(docs)
    assert vocab.itos == ["<pad>", "<unk>", "a", "b", "c", "d"]  # by count, ties by token
    assert vocab.encode(["a", "zzz", "d"]) == [2, 1, 5]
    assert text.Vocab.build(docs, min_freq=2).itos == ["<pad>", "<unk>", "a", "b"]
    again = text.Vocab.from_state_dict(vocab.state_dict())
    assert again.itos == vocab.itos and again.stoi == vocab.stoi
    with pytest.raises(ValueError, match="min_freq"):
        text.Vocab.build(docs, min_freq=0)
    with pytest.raises(ValueError, match="starts with"):
        text.Vocab(["a", "b"])


# ---------------------------------------------------------------- CSV

def write_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)


def test_read_csv_quotes_commas_backslashes(tmp_path):
    rows = [["3", 'Oil "surges", again', "Prices rose\\fell, a lot"],
            ["1", "A\\B", 'He said ""hi""'], ["4", "multi\nline", "x"]]
    write_csv(tmp_path / "t.csv", rows)
    labels, texts = data.read_csv(str(tmp_path / "t.csv"))
    assert labels == [2, 0, 3]
    assert texts == ['Oil "surges", again Prices rose\\fell, a lot', 'A\\B He said ""hi""',
                     "multi\nline x"]


@pytest.mark.parametrize("rows, match", [
    ([["5", "t", "d"]], "label in 1..4"), ([["x", "t", "d"]], "label in 1..4"),
    ([["1"]], "expected"), ([], "no rows")])
def test_read_csv_errors(tmp_path, rows, match):
    write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(data.DataError, match=match):
        data.read_csv(str(tmp_path / "bad.csv"))


def test_real_rows_parse():
    path = os.path.join(MINI, "test.csv")
    if not os.path.exists(path):
        pytest.skip("../shared/data/ag_news_mini not present")
    labels, texts = data.read_csv(path)
    assert len(labels) == 1520 and sorted(set(labels)) == [0, 1, 2, 3]
    assert all(labels.count(k) == 380 for k in range(4))


# ---------------------------------------------------------------- download

@pytest.fixture
def http_folder(tmp_path):
    """A folder served over HTTP on 127.0.0.1; yields (folder, base_url, stop)."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    yield served, f"http://127.0.0.1:{server.server_address[1]}/", stop
    if thread.is_alive():
        stop()


def md5_of(path):
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_download_good_file(http_folder, tmp_path, monkeypatch):
    served, url, _ = http_folder
    for split in ("train", "test"):
        write_csv(served / f"{split}.csv", [["1", "title", f"{split} body"]])
    monkeypatch.setattr(data, "MD5", {f"{s}.csv": md5_of(served / f"{s}.csv") for s in ("train", "test")})
    cache = tmp_path / "cache"
    paths = data.ensure_files(str(cache), base_url=url, progress=False)
    assert open(paths["train"]).read() == open(served / "train.csv").read()
    assert sorted(os.listdir(cache)) == ["test.csv", "train.csv"]
    # present files are used as they are, without the server
    assert data.ensure_files(str(cache), base_url="http://127.0.0.1:9/", progress=False) == paths


def test_download_bad_checksum_leaves_nothing(http_folder, tmp_path):
    served, url, _ = http_folder
    write_csv(served / "train.csv", [["1", "not", "the real file"]])
    cache = tmp_path / "cache"
    with pytest.raises(data.DataError, match="MD5 .* does not match"):
        data.ensure_files(str(cache), splits=("train",), base_url=url, progress=False)
    assert os.listdir(cache) == []


def test_download_server_gone(http_folder, tmp_path, monkeypatch):
    _, url, stop = http_folder
    stop()
    cache = tmp_path / "cache"
    monkeypatch.setenv(data.URL_ENV, url)
    with pytest.raises(data.DataError, match="could not download .*train.csv.*--data-dir"):
        data.ensure_files(str(cache), splits=("train",), progress=False)
    assert os.listdir(cache) == []


def test_missing_files_without_download(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.DIR_ENV, str(tmp_path / "nowhere"))
    assert data.default_data_dir() == str(tmp_path / "nowhere")
    assert main(["train", "--no-download", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "train.csv" in err and "--data-dir" in err


# ---------------------------------------------------------------- models and training

WORDS = {0: "war minister election troops", 1: "match goal season coach",
         2: "shares profit market bank", 3: "software chip internet space"}


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    """A small AG News-shaped folder whose classes are told apart by their words."""
    folder = tmp_path_factory.mktemp("agnews")
    g = torch.Generator().manual_seed(0)
    common = "the a of to in for on with said new".split()

    def rows(n):
        out = []
        for i in range(n):
            label = i % 4
            words = WORDS[label].split() + common
            picks = torch.randint(0, len(words), (int(torch.randint(3, 25, (1,), generator=g)),),
                                  generator=g)
            body = " ".join(words[j] for j in picks.tolist())
            out.append([str(label + 1), f"Headline {i}", body + "."])
        return out

    write_csv(folder / "train.csv", rows(256))
    write_csv(folder / "test.csv", rows(64))
    return str(folder)


@pytest.mark.parametrize("model", [m for m, spec in MODELS.items()
                                   if spec[0] not in FASTRNN_ONLY_MODES])
def test_backends_agree_step_by_step(model, synthetic_dir):
    corpus = training.load_corpus(synthetic_dir, limit=64, progress=False)
    results = {}
    for backend in ("torch", "fastrnn"):
        config = training.TrainConfig(model=model, backend=backend, limit=64, data_dir=synthetic_dir)
        results[backend] = training.train(config, corpus, progress=False, log=lambda *a: None)
    torch_losses, fast_losses = results["torch"]["step_losses"], results["fastrnn"]["step_losses"]
    assert len(fast_losses) == 4
    assert max(abs(a - b) for a, b in zip(torch_losses, fast_losses)) < 1e-4
    rnn_types = {type(results[b]["model"].rnn).__module__.split(".")[0] for b in results}
    assert rnn_types == {"torch", "fastrnn"}
    for name, p in results["torch"]["model"].state_dict().items():
        torch.testing.assert_close(results["fastrnn"]["model"].state_dict()[name], p,
                                   atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("model, options", [
    ("lnlstm-packed", {}), ("lstm-packed", dict(weight_drop=0.5, zoneout=0.1))])
def test_fastrnn_only_models_match_their_plain_ops_step_by_step(model, options, synthetic_dir,
                                                                tmp_path):
    """What torch.nn lacks trains the same as its plain-ops reference (the same masks from
    the same seed), and its checkpoint evaluates (zoneout's expectation at eval)."""
    corpus = training.load_corpus(synthetic_dir, limit=64, progress=False)
    config = training.TrainConfig(model=model, limit=64, data_dir=synthetic_dir, **options)
    fused = training.train(config, corpus, progress=False, log=lambda *a: None)
    with reference.plain_ops():
        plain = training.train(config, corpus, progress=False, log=lambda *a: None)
    assert len(fused["step_losses"]) == 4
    assert max(abs(a - b) for a, b in zip(fused["step_losses"], plain["step_losses"])) < 1e-4
    path = str(tmp_path / "m.pt")
    training.save_checkpoint(path, fused["model"], corpus.vocab, config, fused["epochs"])
    model_, _, loaded = training.load_checkpoint(path)
    assert (loaded.weight_drop, loaded.zoneout) == (config.weight_drop, config.zoneout)
    assert model_.rnn.zoneout == config.zoneout
    assert training.evaluate(model_, corpus.test, 16, "cpu")["accuracy"] == \
        fused["epochs"][-1]["test_acc"]


def test_same_seed_same_initial_weights():
    a = build_model("bilstm-packed", 50, backend="torch", seed=3).state_dict()
    b = build_model("bilstm-packed", 50, backend="fastrnn", seed=3).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_learns_and_recurrent_time_is_measured(synthetic_dir):
    corpus = training.load_corpus(synthetic_dir, progress=False)
    config = training.TrainConfig(model="gru-packed", epochs=3, lr=1e-2, bucket=True)
    result = training.train(config, corpus, progress=False, log=lambda *a: None)
    last = result["epochs"][-1]
    assert last["test_acc"] > 0.9, result["epochs"]
    assert 0 < last["recurrent_forward_s"] and 0 < last["recurrent_backward_s"]
    assert last["recurrent_s"] < last["epoch_s"]
    assert sum(sum(row) for row in last["confusion"]) == 64


def test_bucket_sampler_covers_every_row_once():
    lengths = torch.randint(1, 50, (103,)).tolist()
    sampler = training.BucketBatchSampler(range(103), lengths, 8, pool=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(103))
    assert len(batches) == len(sampler) == 13


def test_checkpoint_round_trip_and_cli(synthetic_dir, tmp_path, capsys):
    ckpt, metrics = tmp_path / "m.pt", tmp_path / "m.json"
    assert main(["train", "--data-dir", synthetic_dir, "--model", "lstm-packed", "--limit", "128",
                 "--lr", "1e-2", "--epochs", "2", "--no-progress", "--out", str(ckpt),
                 "--json", str(metrics)]) == 0
    out = capsys.readouterr().out
    assert "epoch 2:" in out and "saved" in out
    report = json.load(open(metrics))
    assert len(report["step_losses"]) == 16 and report["config"]["model"] == "lstm-packed"

    model, vocab, config = training.load_checkpoint(str(ckpt))
    assert config.model == "lstm-packed" and type(model.rnn).__module__.startswith("fastrnn")
    torch_model, _, _ = training.load_checkpoint(str(ckpt), backend="torch")
    headline = "Coach praises the season goal"
    p_fast, p_torch = training.predict(model, vocab, headline), training.predict(torch_model, vocab, headline)
    assert abs(sum(p_fast.values()) - 1) < 1e-5
    assert all(abs(p_fast[k] - p_torch[k]) < 1e-5 for k in p_fast)

    assert main(["evaluate", str(ckpt), "--data-dir", synthetic_dir, "--json",
                 str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    accuracy = json.load(open(tmp_path / "e.json"))["accuracy"]
    assert f"accuracy {accuracy:.4f}" in out and "confusion" in out
    assert accuracy == report["epochs"][-1]["test_acc"]

    assert main(["predict", str(ckpt), headline]) == 0
    out = capsys.readouterr().out
    assert out.split()[0] == max(p_fast, key=p_fast.get) and headline in out


def test_compare_command(synthetic_dir, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert main(["compare", "--data-dir", synthetic_dir, "--model", "gru-packed", "--limit", "64",
                 "--no-progress", "--plot", str(tmp_path / "c.png"),
                 "--json", str(tmp_path / "c.json")]) == 0
    out = capsys.readouterr().out
    assert "speed-up (torch / fastrnn)" in out and "fastrnn" in out
    summary = json.load(open(tmp_path / "c.json"))["summary"]
    assert summary["steps_compared"] == 4 and summary["max_step_loss_diff"] < 1e-4
    assert (tmp_path / "c.png").stat().st_size > 1000


def test_ddp_two_processes_match_one(synthetic_dir, tmp_path):
    """torchrun with 2 processes (gloo) reaches the weights of 1 process on the same
    global batches."""
    common = ["-m", "fastrnn.agnews", "train", "--data-dir", synthetic_dir, "--limit", "64",
              "--model", "lstm-packed", "--no-progress", "--threads", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # Run outside the source tree: `-m` puts the working folder first on sys.path, and
    # the checkout's fastrnn/ has no compiled _C when fastrnn is installed normally.
    single = tmp_path / "one.pt"
    run = subprocess.run([sys.executable, *common, "--out", str(single)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    double = tmp_path / "two.pt"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=2", *common, "--out", str(double)],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    a = torch.load(single, weights_only=True)["state_dict"]
    b = torch.load(double, weights_only=True)["state_dict"]
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-5)
    assert not torch.equal(a["fc.weight"], build_model("lstm-packed", 10).fc.weight)


@pytest.mark.skipif(not os.path.exists(os.path.join(MINI, "train.csv")),
                    reason="../shared/data/ag_news_mini not present")
def test_real_rows_end_to_end(tmp_path):
    """A short run of `compare` on real AG News rows: the backends agree step by step."""
    out = tmp_path / "c.json"
    assert main(["compare", "--data-dir", MINI, "--limit", "320", "--model", "lstm-packed",
                 "--no-progress", "--json", str(out)]) == 0
    report = json.load(open(out))
    assert report["summary"]["steps_compared"] == 20
    assert report["summary"]["max_step_loss_diff"] < 1e-4
    assert report["fastrnn"]["epochs"][0]["test_acc"] == pytest.approx(
        report["torch"]["epochs"][0]["test_acc"], abs=0.005)


def test_sparse_embedding_option(synthetic_dir):
    """--sparse-embedding: SparseAdam moves only the rows of the batch's tokens; both
    backends still agree step by step."""
    corpus = training.load_corpus(synthetic_dir, limit=32, progress=False)
    results = {}
    for backend in ("torch", "fastrnn"):
        config = training.TrainConfig(model="lstm-packed", backend=backend, limit=32,
                                      sparse_embedding=True, batch_size=32)
        results[backend] = training.train(config, corpus, progress=False, log=lambda *a: None)
    assert abs(results["torch"]["step_losses"][0] - results["fastrnn"]["step_losses"][0]) < 1e-6
    model = results["fastrnn"]["model"]
    assert model.embedding.sparse
    initial = build_model("lstm-packed", len(corpus.vocab), seed=0).embedding.weight
    seen = torch.zeros(len(corpus.vocab), dtype=torch.bool)
    for ids in corpus.train.ids:
        seen[ids] = True
    moved = (model.embedding.weight.detach() != initial).any(dim=1)
    assert torch.equal(moved, seen)  # one step over all 32 rows: exactly their tokens moved
