import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from charrnn.data import corpus
from charrnn.data.corpus import Corpus
from charrnn.errors import CharRNNError

TEXT = ("Happy families are all alike; every unhappy family is unhappy in its own way.\n" * 200).encode()
SHA = hashlib.sha256(TEXT).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """/good serves TEXT; /truncated promises TEXT's length and stops halfway; /other serves other bytes."""

    def do_GET(self):
        body = {"/good": TEXT, "/truncated": TEXT, "/other": TEXT.upper()}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path == "/truncated" else body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def known(url=None):
    return Corpus(name="tiny", filename="tiny.txt", sha256=SHA, url=url)


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_download_verifies_and_writes(server, tmp_path, monkeypatch):
    monkeypatch.delenv(corpus.MIRROR_ENV, raising=False)
    path, sha = corpus.fetch(known(f"{server}/good"), tmp_path / "raw")
    assert path == tmp_path / "raw" / "tiny.txt"
    assert path.read_bytes() == TEXT and sha == SHA


@pytest.mark.parametrize("route, message", [("/truncated", "broke off"), ("/other", "expected " + SHA)])
def test_bad_download_leaves_nothing(server, tmp_path, monkeypatch, route, message):
    monkeypatch.delenv(corpus.MIRROR_ENV, raising=False)
    raw = tmp_path / "raw"
    with pytest.raises(CharRNNError, match=message):
        corpus.fetch(known(f"{server}{route}"), raw)
    assert not (raw / "tiny.txt").exists()
    assert leftovers(raw) == []


def test_unreachable_url_names_the_mirror_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(corpus.MIRROR_ENV, raising=False)
    with pytest.raises(CharRNNError, match="could not download .*CHARRNN_DATA_MIRROR to a folder holding tiny.txt"):
        corpus.fetch(known("http://127.0.0.1:9/none"), tmp_path)


def test_mirror_is_used_and_verified(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.txt").write_bytes(TEXT)
    path, _ = corpus.fetch(known("http://127.0.0.1:9/unused"), tmp_path / "raw", mirror=mirror)
    assert path.read_bytes() == TEXT

    (mirror / "tiny.txt").write_bytes(TEXT + b"tampered")
    with pytest.raises(CharRNNError, match="mirror file .* has sha256"):
        corpus.fetch(known(), tmp_path / "raw2", mirror=mirror)
    assert not (tmp_path / "raw2" / "tiny.txt").exists()


def test_a_destination_that_refuses_the_file_is_one_line(tmp_path):
    """`charrnn fetch --dest` a system folder: /proc takes no file (a FileNotFoundError's traceback; /sys
    gave a PermissionError's)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tiny.txt").write_bytes(TEXT)
    with pytest.raises(CharRNNError, match=r"^cannot write /proc/tiny.txt \(No such file or directory\)$"):
        corpus.fetch(known(), "/proc", mirror=mirror)


def test_file_already_in_place_is_kept(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "tiny.txt").write_bytes(TEXT)
    corpus.fetch(known("http://127.0.0.1:9/unused"), raw, mirror="")
    assert "already present" in capsys.readouterr().out


def test_resolve_names_and_paths(tmp_path):
    assert corpus.resolve("hamlet").start == 15858
    with pytest.raises(CharRNNError, match="unknown corpus 'war-and-peace': use one of anna, tinyshakespeare, hamlet"):
        corpus.resolve("war-and-peace")
    with pytest.raises(CharRNNError, match="corpus file 'books/missing.txt' does not exist"):
        corpus.resolve("books/missing.txt")
    own = tmp_path / "mine.txt"
    own.write_text("some text")
    assert corpus.resolve(str(own)).name == "mine"


def test_own_file_must_be_utf8_and_not_empty(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(CharRNNError, match="is empty"):
        corpus.fetch(corpus.resolve(str(empty)), tmp_path / "raw")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(CharRNNError, match="byte 0xe9 at offset 3"):
        corpus.fetch(corpus.resolve(str(latin1)), tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_real_corpora_from_the_mirror(mirror, tmp_path):
    for source in corpus.CORPORA.values():
        path, sha = corpus.fetch(source, tmp_path, mirror=mirror)
        assert sha == source.sha256 == corpus.sha256_of(path)
    hamlet = "".join(corpus.read_chunks(tmp_path / "hamlet.txt", start=corpus.CORPORA["hamlet"].start))
    assert hamlet.startswith("The Tragedie of Hamlet")
    anna = corpus.CORPORA["anna"]
    novel = "".join(corpus.read_chunks(tmp_path / "anna.txt", start=anna.start, end=anna.end, chunk_chars=100_000))
    assert len(novel) == 1_966_145 and novel.endswith('which I have the power to put into\nit."\n')
    assert "Gutenberg" not in novel[-100_000:]  # the licence footer is left out of every split
