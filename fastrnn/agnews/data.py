"""AG News on disk: find it, download it (MD5-checked, atomic), read it.

The files are the CSV release of Zhang, Zhao & LeCun (2015) that torchtext's
``AG_NEWS`` reads: headerless, fully quoted ``"label","title","description"``,
labels 1..4. The text of a row is ``title + " " + description``.
"""
import csv
import hashlib
import http.client
import os
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


class DataError(RuntimeError):
    """AG News could not be found, downloaded or read."""


def default_data_dir() -> str:
    if os.environ.get(DIR_ENV):
        return os.environ[DIR_ENV]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "fastrnn", "ag_news")


def _where_to_put(data_dir: str) -> str:
    return (f"Put AG News's train.csv and test.csv (the CSV release, e.g. from "
            f"{BASE_URL}) in {data_dir}, or point --data-dir or ${DIR_ENV} at a folder "
            f"that holds them.")


def download(url: str, dest: str, md5: Optional[str], progress: bool = True,
             timeout: float = 60.0) -> str:
    """Download ``url`` to ``dest``. The bytes go to a temporary file in the same
    folder, renamed onto ``dest`` only once complete and matching ``md5``; on any
    failure nothing is left behind and DataError says what happened."""
    folder = os.path.dirname(os.path.abspath(dest))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(dest)}.", suffix=".part", dir=folder)
    try:
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
        if os.path.exists(tmp):
            os.remove(tmp)


def _progress_bar(total, name, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"downloading {name}", unit="B", unit_scale=True,
                unit_divisor=1024, disable=not enabled)


def ensure_files(data_dir: Optional[str] = None, splits=("train", "test"), allow_download=True,
                 base_url: Optional[str] = None, progress: bool = True) -> Dict[str, str]:
    """Paths of ``{split}.csv`` in ``data_dir`` (default: the cache folder),
    downloading missing files from the canonical location when allowed."""
    data_dir = data_dir or default_data_dir()
    base_url = base_url or os.environ.get(URL_ENV) or BASE_URL
    paths = {}
    for split in splits:
        name = f"{split}.csv"
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            if not allow_download:
                raise DataError(f"{path} does not exist. " + _where_to_put(data_dir))
            download(base_url.rstrip("/") + "/" + name, path, MD5[name], progress=progress)
        paths[split] = path
    return paths


def read_csv(path: str) -> Tuple[List[int], List[str]]:
    """(labels 0..3, texts) of an AG News CSV file."""
    labels, texts = [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.reader(f), 1):
                if len(row) < 2 or not row[0].strip().isdigit() or not 1 <= int(row[0]) <= len(CLASSES):
                    raise DataError(f"{path}:{line}: expected \"label\",\"title\",\"description\" "
                                    f"with a label in 1..{len(CLASSES)}, got {row[:3]!r}")
                labels.append(int(row[0]) - 1)
                texts.append(" ".join(row[1:]))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {path}: {error}") from error
    if not labels:
        raise DataError(f"{path} holds no rows")
    return labels, texts
