"""Training and evaluation of the AG News classifiers (one process or DDP)."""
import dataclasses
import os
import re
import time
from typing import Dict, List, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from .data import CLASSES, ensure_files, read_csv
from .models import FASTRNN_ONLY_MODES, MODELS, build_model
from .timing import RecurrentClock
from .text import Vocab, basic_english


@dataclasses.dataclass
class TrainConfig:
    model: str = "lstm-packed"
    backend: str = "fastrnn"
    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-3
    embed_dim: int = 64
    hidden_dim: int = 32
    min_freq: int = 1
    seed: int = 0
    device: str = "cpu"
    bucket: bool = False
    sparse_embedding: bool = False
    weight_drop: float = 0.0
    zoneout: float = 0.0
    limit: Optional[int] = None
    data_dir: Optional[str] = None


@dataclasses.dataclass
class Corpus:
    vocab: Vocab
    train: "EncodedRows"
    test: Optional["EncodedRows"]


class EncodedRows(torch.utils.data.Dataset):
    """Token ids (one int64 tensor a row) and labels, encoded once up front."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int], vocab: Vocab):
        self.ids = [torch.tensor(vocab.encode(basic_english(t)) or [vocab.unk_id]) for t in texts]
        self.labels = torch.tensor(labels, dtype=torch.int64)
        self.lengths = [len(ids) for ids in self.ids]

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        return self.ids[i], self.labels[i]


def collate(rows):
    """(tokens [batch, max_len] padded with <pad> = 0, lengths [batch], labels [batch])."""
    ids, labels = zip(*rows)
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.int64)
    return pad_sequence(list(ids), batch_first=True, padding_value=0), lengths, torch.stack(labels)


def load_corpus(data_dir=None, limit=None, min_freq=1, with_test=True, allow_download=True,
                progress=True) -> Corpus:
    """Read train.csv (first ``limit`` rows) and test.csv, build the vocabulary from
    the training rows, encode both."""
    splits = ("train", "test") if with_test else ("train",)
    paths = ensure_files(data_dir, splits, allow_download=allow_download, progress=progress)
    labels, texts = read_csv(paths["train"])
    if limit is not None:
        labels, texts = labels[:limit], texts[:limit]
    vocab = Vocab.build((basic_english(t) for t in texts), min_freq=min_freq)
    train = EncodedRows(texts, labels, vocab)
    test = EncodedRows(*reversed(read_csv(paths["test"])), vocab) if with_test else None
    return Corpus(vocab, train, test)


class BucketBatchSampler(Sampler):
    """Batches of rows of similar length: the sampler's order is cut into pools of
    ``pool`` batches, each pool is sorted by length and cut into batches, and the
    batches are shuffled. Less padding, the same rows each epoch."""

    def __init__(self, sampler, lengths, batch_size, pool=50, seed=0):
        self.sampler, self.lengths, self.batch_size = sampler, lengths, batch_size
        self.pool, self.seed, self.epoch = pool, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        order = list(self.sampler)
        size = self.pool * self.batch_size
        batches = []
        for start in range(0, len(order), size):
            pool = sorted(order[start:start + size], key=lambda i: self.lengths[i])
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        shuffle = torch.randperm(len(batches), generator=torch.Generator().manual_seed(
            self.seed + self.epoch)).tolist()
        return iter([batches[i] for i in shuffle])

    def __len__(self):
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size


def distributed_context(device: str):
    """(rank, world size); initialises the process group under torchrun
    (gloo on the CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        dist.init_process_group(backend)
    if torch.device(device).type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def train_loader(rows: EncodedRows, config: TrainConfig, rank=0, world=1):
    """Batches of ``batch_size // world`` rows for this rank. The global batch of
    step k is the same rows whatever ``world`` is (DistributedSampler deals the
    seeded permutation out round-robin)."""
    if config.batch_size % world:
        raise ValueError(f"--batch-size {config.batch_size} must be divisible by the "
                         f"number of processes ({world})")
    per_rank = config.batch_size // world
    sampler = DistributedSampler(rows, num_replicas=world, rank=rank, shuffle=True,
                                 seed=config.seed)
    if config.bucket:
        batches = BucketBatchSampler(sampler, rows.lengths, per_rank, seed=config.seed)
        return DataLoader(rows, batch_sampler=batches, collate_fn=collate), batches
    return DataLoader(rows, batch_size=per_rank, sampler=sampler, collate_fn=collate), sampler


class Adam:
    """The tutorial's Adam, in PyTorch's fused single-kernel form where the device has
    one (the same update; ~4x faster on the 22k x 64 embedding table on the CPU).
    With a sparse embedding its table gets SparseAdam (lazy: only the rows of the
    batch's tokens move) and the rest Adam."""

    def __init__(self, model, lr):
        sparse = [p for m in model.modules() if getattr(m, "sparse", False)
                  for p in m.parameters(recurse=False)]
        dense = [p for p in model.parameters() if all(p is not q for q in sparse)]
        try:
            self.optimizers = [torch.optim.Adam(dense, lr=lr, fused=True)]
        except RuntimeError:
            self.optimizers = [torch.optim.Adam(dense, lr=lr)]
        if sparse:
            self.optimizers.append(torch.optim.SparseAdam(sparse, lr=lr))

    def step(self):
        for optimizer in self.optimizers:
            optimizer.step()

    def zero_grad(self, set_to_none=True):
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)


@torch.no_grad()
def evaluate(model, rows: EncodedRows, batch_size: int, device) -> Dict:
    """Accuracy and confusion matrix (rows: true class, columns: predicted).
    Batches are in file order, of ``batch_size`` (the ``rnn`` model averages over
    padding, so its predictions depend on the batch)."""
    was_training = model.training
    model.eval()
    confusion = torch.zeros(len(CLASSES), len(CLASSES), dtype=torch.int64)
    loader = DataLoader(rows, batch_size=batch_size, collate_fn=collate)
    for tokens, lengths, labels in loader:
        predicted = model(tokens.to(device), lengths).argmax(dim=1).cpu()
        confusion += torch.bincount(labels * len(CLASSES) + predicted,
                                    minlength=len(CLASSES) ** 2).view(len(CLASSES), len(CLASSES))
    model.train(was_training)
    return {"accuracy": confusion.diagonal().sum().item() / max(1, confusion.sum().item()),
            "confusion": confusion.tolist()}


def train(config: TrainConfig, corpus: Corpus, progress=True, log=print) -> Dict:
    """Train from ``config.seed``; returns the model and per-epoch metrics."""
    from tqdm.auto import tqdm

    rank, world = distributed_context(config.device)
    device = torch.device(config.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())  # LOCAL_RANK's under torchrun
    if config.sparse_embedding and world > 1:
        raise ValueError("--sparse-embedding runs in one process only (DDP would all-reduce "
                         "sparse gradients, which nccl does not support and no test covers)")
    model = build_model(config.model, len(corpus.vocab), config.embed_dim, config.hidden_dim,
                        len(CLASSES), config.backend, seed=config.seed,
                        sparse_embedding=config.sparse_embedding,
                        weight_drop=config.weight_drop, zoneout=config.zoneout).to(device)
    clock = RecurrentClock(device)
    model.clock = clock
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = Adam(model, config.lr)
    loader, sampler = train_loader(corpus.train, config, rank, world)
    epochs: List[Dict] = []
    step_losses: List[float] = []
    for epoch in range(config.epochs):
        sampler.set_epoch(epoch)
        clock.reset()
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        rows = 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs} [{config.backend}]",
                   disable=not progress or rank != 0, dynamic_ncols=True, leave=True)
        losses = []
        last_step = len(loader) - 1
        start = time.perf_counter()
        for step, (tokens, lengths, labels) in enumerate(bar):
            tokens, labels = tokens.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            logits = net(tokens, lengths)
            loss = F.cross_entropy(logits, labels)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            loss_sum += loss.detach() * len(labels)
            correct += (logits.detach().argmax(1) == labels).sum()
            rows += len(labels)
            # .item() synchronises: every 20 steps, and at the last, whose values (the epoch
            # line's) the bar keeps once the loop has closed it.
            if step % 20 == 0 or step == last_step:
                bar.set_postfix(loss=f"{loss_sum.item() / rows:.4f}", acc=f"{correct.item() / rows:.4f}")
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        bar.close()
        step_losses += torch.stack(losses).tolist() if losses else []
        totals = torch.stack([loss_sum.cpu(), correct.cpu().double(), torch.tensor(float(rows), dtype=torch.float64)])
        if world > 1:
            dist.all_reduce(totals)
        metrics = {"epoch": epoch + 1, "train_loss": totals[0].item() / totals[2].item(),
                   "train_acc": totals[1].item() / totals[2].item(), "epoch_s": seconds,
                   "samples_per_s": totals[2].item() / seconds,
                   "recurrent_s": clock.total_s, "recurrent_forward_s": clock.forward_s,
                   "recurrent_backward_s": clock.backward_s}
        if corpus.test is not None:
            result = evaluate(model, corpus.test, config.batch_size, device)
            metrics["test_acc"], metrics["confusion"] = result["accuracy"], result["confusion"]
        epochs.append(metrics)
        if rank == 0:
            test = f"  test acc {metrics['test_acc']:.4f}" if "test_acc" in metrics else ""
            log(f"[{config.backend}] epoch {epoch + 1}: train loss {metrics['train_loss']:.4f}  train acc "
                f"{metrics['train_acc']:.4f}{test}  {seconds:.1f} s  "
                f"{metrics['samples_per_s']:.0f} samples/s  recurrent layer {clock.total_s:.2f} s")
    return {"model": model, "epochs": epochs, "step_losses": step_losses, "rank": rank,
            "world": world, "config": dataclasses.asdict(config)}


class CheckpointError(ValueError):
    """A file that is not a readable fastrnn.agnews checkpoint."""


FORMAT = "fastrnn.agnews/1"
CHECKPOINT_KEYS = ("format", "config", "vocab", "classes", "state_dict")


def save_checkpoint(path: str, model, vocab: Vocab, config: TrainConfig, metrics=None):
    """Model weights, vocabulary and config in one file (loadable with weights_only=True)."""
    state = {"format": FORMAT, "config": dataclasses.asdict(config),
             "vocab": vocab.state_dict(), "classes": list(CLASSES),
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "metrics": metrics or []}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def _short(error, limit=160) -> str:
    """An exception's message on one line, without terminal escapes, at most ``limit`` long."""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(error)).split()) or type(error).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


# How a file torch.save wrote begins: a zip archive (torch >= 1.6), or a pickle (the legacy
# format); train --out writes the former.
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_MAGIC = b"\x80"


def _not_torch_file(path: str) -> Optional[str]:
    """What a file is when it cannot be one torch.save wrote (its first bytes), else None."""
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(ZIP_MAGIC) or head.startswith(PICKLE_MAGIC):
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a torch file (neither a zip archive nor a pickle)"
    first = text.splitlines()[0] if text.strip() else ""
    return f"a text file (it begins {first[:40]!r}), not a torch file"


def _unloadable(error) -> str:
    """Why torch.load refused a file that begins as a torch file does, for a user."""
    message = str(error)
    if isinstance(error, OSError) or "zip archive" in message \
            or "PytorchStreamReader" in message or isinstance(error, EOFError):
        why = "a truncated or damaged torch file"
    elif "Weights only load failed" in message:
        why = ("it holds Python objects besides tensors and plain values, which are not loaded "
               "(a checkpoint from train --out holds none)")
    else:
        why = f"not a torch file (torch.load: {type(error).__name__}: {_short(error, 80)})"
    return f"not a checkpoint written by train --out: {why}"


def load_checkpoint(path: str, backend: Optional[str] = None, device="cpu"):
    """(model in eval mode, vocab, config) from a checkpoint; ``backend``
    overrides the one it was trained with (the weights are the same).
    CheckpointError, naming the file, when it is missing, not a torch file,
    truncated, not a fastrnn.agnews checkpoint, of another format version, or
    holds a config or weights that do not fit together."""
    def bad(why):
        return CheckpointError(f"{path}: {why}")

    if os.path.isdir(path):
        raise bad("a folder, not a checkpoint file (one written by train --out)")
    if not os.path.exists(path):
        raise bad("no such file")
    if os.path.getsize(path) == 0:
        raise bad("an empty file, not a checkpoint written by train --out")
    try:
        what = _not_torch_file(path)
    except OSError as error:
        raise bad(f"cannot read it: {error.strerror or error}") from error
    if what is not None:
        raise bad(f"{what}; give a checkpoint written by train --out")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - whatever the bytes make torch.load raise
        raise bad(_unloadable(error)) from error
    if not isinstance(state, dict) or "format" not in state:
        got = (f"keys {', '.join(map(str, list(state)[:8]))}" if isinstance(state, dict)
               else f"a {type(state).__name__}")
        raise bad(f"a torch file, but not a fastrnn.agnews checkpoint (expected a dict with "
                  f"{', '.join(CHECKPOINT_KEYS)}; got {got})")
    if state["format"] != FORMAT:
        raise bad(f"checkpoint format {state['format']!r}, this version of fastrnn.agnews "
                  f"reads {FORMAT!r} (written by another version?)")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise bad(f"a damaged fastrnn.agnews checkpoint: no {', '.join(missing)}")
    try:
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in dict(state["config"]).items() if k in known})
        if backend is not None:
            if backend != "fastrnn" and MODELS.get(config.model, ("",))[0] in FASTRNN_ONLY_MODES:
                raise CheckpointError(
                    f"{path}: holds a {config.model} model, which torch.nn has no module for; "
                    f"leave --backend out (or give --backend fastrnn) to run it")
            config.backend = backend
        for name in ("embed_dim", "hidden_dim", "batch_size"):
            value = getattr(config, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"config {name} is {value!r}, expected a positive integer")
        vocab = Vocab.from_state_dict(state["vocab"])
        model = build_model(config.model, len(vocab), config.embed_dim, config.hidden_dim,
                            len(state["classes"]), config.backend,
                            weight_drop=config.weight_drop, zoneout=config.zoneout)
        model.load_state_dict(state["state_dict"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise bad(f"a damaged fastrnn.agnews checkpoint: {type(error).__name__}: "
                  f"{_short(error, 300)}") from error
    return model.to(device).eval(), vocab, config


@torch.no_grad()
def predict(model, vocab: Vocab, text: str, device="cpu") -> Dict[str, float]:
    """Class probabilities of one headline/text."""
    ids = torch.tensor([vocab.encode(basic_english(text)) or [vocab.unk_id]])
    probs = torch.softmax(model(ids.to(device), torch.tensor([ids.shape[1]])), dim=1)[0].cpu()
    return {name: p.item() for name, p in zip(CLASSES, probs)}
