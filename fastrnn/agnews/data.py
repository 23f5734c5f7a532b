"""AG News on disk: find it, download it (MD5-checked, atomic), read it.

The files are the CSV release of Zhang, Zhao & LeCun (2015) that torchtext's
``AG_NEWS`` reads: headerless, fully quoted ``"label","title","description"``,
labels 1..4. The text of a row is ``title + " " + description``.
"""
import collections
import csv
import hashlib
import http.client
import lzma
import os
import sys
import tempfile
import urllib.error
import urllib.request
from typing import Dict, List, Optional, Tuple

CLASSES = ("World", "Sports", "Business", "Sci/Tech")
MD5 = {
    "train.csv": "b1a00f826fdfbd249f79597b59e1dc12",
    "test.csv": "d52ea96a97a2d943681189a97654912d",
}
# The location torchtext's AG_NEWS downloads from.
BASE_URL = "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
DIR_ENV = "FASTRNN_AG_NEWS_DIR"
URL_ENV = "FASTRNN_AG_NEWS_URL"


# The embedded sample: AG News's canonical test split (test.csv, MD5["test.csv"]) as xz,
# split as sample/README.md says. Used when the full set is neither here nor downloadable.
SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sample", "test.csv.xz")
SAMPLE_MD5 = {"train.csv": "4afdbb370439354448dd749089bc9201",
              "test.csv": "85925e9e7722813a3e3ab89448d8bc36"}
SAMPLE_TEST_EVERY = 5  # every 5th row of each class is a test row


class DataError(RuntimeError):
    """AG News could not be found, downloaded or read."""


def cache_data_dir() -> str:
    """The cache folder AG News is downloaded to (created when needed)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "fastrnn", "ag_news")


def default_data_dir() -> str:
    """$FASTRNN_AG_NEWS_DIR if set, else the cache folder."""
    return os.environ.get(DIR_ENV) or cache_data_dir()


def _where_to_put(data_dir: str) -> str:
    return (f"Put AG News's train.csv and test.csv (the CSV release, e.g. from "
            f"{BASE_URL}) in {data_dir}, or point --data-dir or ${DIR_ENV} at a folder "
            f"that holds them.")


def check_data_dir(path: str, named_by: str = "--data-dir") -> str:
    """``path`` when it names an existing folder; else DataError saying what
    ``named_by`` (the option or variable that gave it) should name. A folder the
    user names is never created."""
    if not path:
        raise DataError(f"{named_by} is empty; it names the folder that holds train.csv and "
                        f"test.csv")
    if not os.path.exists(path):
        raise DataError(f"{named_by} {path}: no such folder (it is not created). ".lstrip()
                        + _where_to_put(path))
    if not os.path.isdir(path):
        hint = (f" (here: {os.path.dirname(path) or '.'})"
                if os.path.basename(path) in MD5 else "")
        raise DataError(f"{named_by} {path} is a file, not a folder: name the folder that "
                        f"holds train.csv and test.csv{hint}".lstrip())
    return path


def download(url: str, dest: str, md5: Optional[str], progress: bool = True,
             timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest``. The bytes go to a temporary file in the same
    folder, renamed onto ``dest`` only once complete and matching ``md5``; on any
    failure nothing is left behind and DataError says what happened."""
    folder = os.path.dirname(os.path.abspath(dest))
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".part",
                                   dir=folder)
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress_bar(total, os.path.basename(dest), progress)
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
            bar.close()
        if md5 is not None and digest.hexdigest() != md5:
            raise DataError(f"{url}: MD5 {digest.hexdigest()} does not match the expected {md5} "
                            f"(a changed or damaged file); nothing was written to {dest}.")
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        raise DataError(f"could not download {url}: {error}. "
                        + _where_to_put(folder)) from error
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _progress_bar(total, name, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"downloading {name}", unit="B", unit_scale=True,
                unit_divisor=1024, disable=not enabled)


def sample_data_dir() -> str:
    """A folder holding the embedded sample as train.csv (6,080 rows) and test.csv (1,520
    rows): the canonical test split, every 5th row of each class (in file order) a test row.
    Written once into the cache, each file checked against its MD5."""
    folder = os.path.join(os.path.dirname(cache_data_dir()), "ag_news_sample")
    paths = {name: os.path.join(folder, name) for name in SAMPLE_MD5}
    if all(_md5_of(path) == SAMPLE_MD5[name] for name, path in paths.items()):
        return folder
    try:
        with lzma.open(SAMPLE) as f:
            raw = f.read()
    except (OSError, lzma.LZMAError) as error:
        raise DataError(f"cannot read the embedded AG News sample {SAMPLE}: {error}") from error
    if hashlib.md5(raw).hexdigest() != MD5["test.csv"]:
        raise DataError(f"the embedded AG News sample {SAMPLE} is damaged (MD5 mismatch); "
                        f"reinstall fastrnn")
    seen = collections.Counter()
    rows = {"train.csv": [], "test.csv": []}
    for line in raw.splitlines(keepends=True):
        seen[line[:4]] += 1  # '"1",' .. '"4",': the row's class
        rows["test.csv" if seen[line[:4]] % SAMPLE_TEST_EVERY == 0 else "train.csv"].append(line)
    try:
        os.makedirs(folder, exist_ok=True)
        for name, path in paths.items():
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
            with os.fdopen(fd, "wb") as out:
                out.write(b"".join(rows[name]))
            os.replace(tmp, path)
    except OSError as error:
        raise DataError(f"cannot write the AG News sample to {folder}: {error}") from error
    return folder


def _md5_of(path: str) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            return hashlib.md5(f.read()).hexdigest()
    except OSError:
        return None


def ensure_files(data_dir: Optional[str] = None, splits=("train", "test"), allow_download=True,
                 base_url: Optional[str] = None, progress: bool = True) -> Dict[str, str]:
    """Paths of ``{split}.csv`` in ``data_dir`` (default: $FASTRNN_AG_NEWS_DIR, else the
    cache folder), downloading missing files from the canonical location when allowed. In
    the cache folder (no folder named), when the download fails, the embedded sample's
    files instead, with one line on stderr saying so."""
    if data_dir is None and not os.environ.get(DIR_ENV):
        try:
            return ensure_files(cache_data_dir(), splits, allow_download, base_url, progress)
        except DataError as error:
            if not allow_download or not isinstance(error.__cause__, _NETWORK_ERRORS):
                raise
            print(f"note: AG News could not be downloaded ({error.__cause__}); using the "
                  f"sample shipped with fastrnn (6,080 training and 1,520 test rows of AG "
                  f"News's test split). For the full set, connect to the network or put "
                  f"train.csv and test.csv in {cache_data_dir()} (from {BASE_URL}).",
                  file=sys.stderr)
            folder = sample_data_dir()
            return {split: os.path.join(folder, f"{split}.csv") for split in splits}
    data_dir = data_dir or default_data_dir()
    base_url = base_url or os.environ.get(URL_ENV) or BASE_URL
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise DataError(f"{data_dir} is a file, not a folder. " + _where_to_put(data_dir))
    paths = {}
    for split in splits:
        name = f"{split}.csv"
        path = os.path.join(data_dir, name)
        if os.path.isdir(path):
            raise DataError(f"{path} is a folder, not a CSV file. " + _where_to_put(data_dir))
        if not os.path.exists(path):
            if not allow_download:
                raise DataError(f"{path} does not exist. " + _where_to_put(data_dir))
            download(base_url.rstrip("/") + "/" + name, path, MD5[name], progress=progress)
        paths[split] = path
    return paths


# What a failed download raises underneath (an MD5 mismatch is not one: it stays an error).
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)

FORMAT = '"label","title","description" with a label in 1..4'


def _shown(row, width=80) -> str:
    text = repr(row)
    return text if len(text) <= width else text[:width - 5] + "...]"


def read_csv(path: str) -> Tuple[List[int], List[str]]:
    """(labels 0..3, texts) of an AG News CSV file.

    Every row must be exactly ``"label","title","description"`` with a label in
    1..4 and some text. The CSV is read in strict mode, so a quote that is not
    closed (a file cut short, or a dropped closing quote that would merge two
    rows into one) is an error, not a silently odd row; so is a file that ends
    mid-row. Errors are DataError naming the file and the line the row starts on.
    """
    labels, texts = [], []
    start = 1  # the line the current row starts on
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, strict=True)
            try:
                for row in reader:
                    where = f"{path}, line {start}"
                    if not row:
                        raise DataError(f"{where}: empty line; every line must be a row "
                                        f"{FORMAT}")
                    if len(row) != 3:
                        raise DataError(f"{where}: {len(row)} field(s), expected 3 ({FORMAT}); "
                                        f"got {_shown(row)}")
                    label = row[0].strip()
                    if not (label.isascii() and label.isdigit()
                            and 1 <= int(label) <= len(CLASSES)):
                        raise DataError(f"{where}: the label must be 1..{len(CLASSES)} "
                                        f"({FORMAT}); got {row[0]!r}")
                    if any("\x00" in field for field in row):
                        raise DataError(f"{where}: a NUL character (a damaged or binary file?)")
                    if not (row[1].strip() or row[2].strip()):
                        raise DataError(f"{where}: empty title and description")
                    labels.append(int(label) - 1)
                    texts.append(row[1] + " " + row[2])
                    start = reader.line_num + 1
            except csv.Error as error:
                raise DataError(
                    f"{path}, line {start}: malformed CSV row ({error}, seen on line "
                    f"{reader.line_num}): a quote that is never closed, from a file cut short "
                    f"or a missing closing quote that merges rows; expected {FORMAT}") from error
            if labels and _ends_mid_row(f):
                raise DataError(f"{path}, line {start - 1}: the file ends mid-row (no newline "
                                f"or closing quote after the last field): it looks cut short")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if not labels:
        raise DataError(f"{path} holds no rows (expected {FORMAT})")
    return labels, texts


def _ends_mid_row(f) -> bool:
    """Whether the file's last character is neither a line end nor a closing quote."""
    f.buffer.seek(0, os.SEEK_END)
    if f.buffer.tell() == 0:
        return False
    f.buffer.seek(-1, os.SEEK_END)
    return f.buffer.read(1) not in (b"\n", b"\r", b'"')
