"""Finding a corpus's files (flows/discovery.py): local folders and S3 buckets, streamed folder by folder.

The S3 tests run against moto in server mode on 127.0.0.1 (nothing leaves the machine) and point s3fs at
it the way a user would: environment variables.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from flows import discovery
from flows.discovery import (
    HIDDEN_FILE,
    HIDDEN_FOLDER,
    REMOTE_NOT_AUDIO,
    Discovered,
    Found,
    content_sha256,
    discover,
    is_remote,
    iter_discover,
    local_copy,
    resolve_root,
)
from pipeline import AudioError, Config, decode_audio, file_sha256

ROOT = Path(__file__).resolve().parents[1]


def _clips(ravdess_dir: Path, n: int) -> list[Path]:
    return sorted((ravdess_dir / "Actor_05").glob("*.flac"))[:n]


# ----------------------------------------------------------------------------- local folders
@pytest.fixture
def local_corpus(tmp_path, ravdess_dir) -> Path:
    """Real clips (one nested, one without an audio extension), hidden entries, a text file, a broken
    .wav and a broken file that starts like a WAV but has no audio extension."""
    one, two, three = _clips(ravdess_dir, 3)
    root = tmp_path / "corpus"
    (root / "a" / "b").mkdir(parents=True)
    shutil.copy(one, root / "a" / "one.flac")
    shutil.copy(two, root / "a" / "b" / "two.flac")
    shutil.copy(three, root / "a" / "take1.dat")  # real audio, found by its content
    (root / "broken.wav").write_bytes(np.random.default_rng(3).bytes(20_000))
    (root / "garbage.bin").write_bytes(b"RIFF" + np.random.default_rng(4).bytes(20_000))
    (root / "notes.txt").write_text("session notes\n" * 40)
    (root / ".DS_Store").write_bytes(b"\0\1\2")
    (root / ".cache").mkdir()
    shutil.copy(one, root / ".cache" / "hidden.flac")
    return root


@pytest.mark.parametrize("isolation", [True, False], ids=["isolated", "in-process"])
def test_discover_classifies_a_local_folder(local_corpus, isolation):
    found = discover(local_corpus, Config().replace(decode_isolation=isolation))
    rel = lambda p: p.relative_to(local_corpus).as_posix()  # noqa: E731

    assert isinstance(found, Discovered)
    assert [rel(p) for p in found.audio] == sorted(["a/one.flac", "a/b/two.flac", "a/take1.dat", "broken.wav"])
    skipped = {rel(p): why for p, why in found.skipped}
    assert skipped.pop(".DS_Store") == HIDDEN_FILE and skipped.pop(".cache") == HIDDEN_FOLDER
    assert list(skipped) == ["notes.txt"] and skipped["notes.txt"].startswith("not audio: ")
    assert [(rel(p), kind in ("unsupported", "decode")) for p, _, kind in found.failed] == [("garbage.bin", True)]


def test_found_carries_size_and_modification_stamp(local_corpus):
    settled = ("a/one.flac", "a/take1.dat", "notes.txt", ".DS_Store")
    hour_ago = time.time() - 3600
    for path in settled:
        os.utime(os.path.join(local_corpus, path), (hour_ago, hour_ago))
    fresh = os.path.join(local_corpus, "a", "fresh.flac")
    shutil.copy(os.path.join(local_corpus, "a", "one.flac"), fresh)
    by_path = {f.path: f for f in iter_discover(str(local_corpus), Config().replace(decode_isolation=False))}
    for path in settled:
        f = by_path[os.path.join(local_corpus, path)]
        st = os.stat(f.path)
        assert (f.size_bytes, f.stamp) == (st.st_size, str(st.st_mtime_ns))
    # written just now: its mtime does not vouch for its content yet (it will be hashed)
    assert (by_path[fresh].size_bytes, by_path[fresh].stamp) == (os.stat(fresh).st_size, None)
    assert all(isinstance(f, Found) for f in by_path.values())
    assert {f.status for f in by_path.values()} == {"audio", "skipped", "failed"}


def test_local_discovery_streams_folder_by_folder(tmp_path, ravdess_dir):
    """The first file comes out before a later folder is listed: a file added to that folder after the
    first one was handed out is still found (a discovery that listed everything first would miss it)."""
    one, two = _clips(ravdess_dir, 2)
    root = tmp_path / "corpus"
    (root / "a").mkdir(parents=True)
    (root / "z").mkdir()
    shutil.copy(one, root / "a" / "first.flac")
    stream = iter_discover(str(root))
    first = next(stream)
    assert (Path(first.path).name, first.status) == ("first.flac", "audio")
    shutil.copy(two, root / "z" / "late.flac")
    assert [Path(f.path).name for f in stream] == ["late.flac"]


def test_probed_files_come_out_in_batches_not_at_the_end(tmp_path, ravdess_dir, monkeypatch):
    one, two = _clips(ravdess_dir, 2)
    root = tmp_path / "corpus"
    for d in ("a", "z"):
        (root / d).mkdir(parents=True)
    shutil.copy(one, root / "a" / "take1.dat")
    shutil.copy(two, root / "a" / "take2.dat")
    shutil.copy(one, root / "z" / "late.flac")
    monkeypatch.setattr(discovery, "PROBE_BATCH", 2)
    names = [Path(f.path).name for f in iter_discover(str(root), Config().replace(decode_isolation=False))]
    assert names == ["take1.dat", "take2.dat", "late.flac"]
    monkeypatch.setattr(discovery, "PROBE_BATCH", 64)
    names = [Path(f.path).name for f in iter_discover(str(root), Config().replace(decode_isolation=False))]
    assert names == ["late.flac", "take1.dat", "take2.dat"]  # a part batch waits for the end


def test_an_unreadable_folder_is_failed_and_the_rest_found(local_corpus, monkeypatch):
    locked = os.path.join(local_corpus, "a", "b")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = discover(local_corpus, Config().replace(decode_isolation=False))
    assert (locked, "cannot read folder: Permission denied", "unreadable") in [
        (str(p), why, kind) for p, why, kind in found.failed]
    assert local_corpus / "a" / "one.flac" in found.audio
    assert local_corpus / "a" / "b" / "two.flac" not in found.audio


def test_local_roots(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "f.wav").write_bytes(b"x")
    assert resolve_root(str(tmp_path / "c" / ".." / "c")) == str((tmp_path / "c").resolve())
    assert resolve_root(f"file://{tmp_path}/c") == str((tmp_path / "c").resolve())
    for missing in (tmp_path / "nope", tmp_path / "f.wav"):
        with pytest.raises(FileNotFoundError, match=f"^{missing}: no such folder$"):
            resolve_root(str(missing))


@pytest.mark.parametrize("path,remote", [
    ("s3://bucket/prefix", True), ("gs://b", True), ("memory://x", True), ("simplecache::s3://b/k", True),
    ("file:///tmp/x", False), ("/tmp/x", False), ("relative/x", False), (Path("/tmp/x"), False),
    ("C:\\corpus", False)])
def test_is_remote(path, remote):
    assert is_remote(path) is remote


def test_local_copy_and_hash_of_a_local_file(ravdess_dir):
    clip = _clips(ravdess_dir, 1)[0]
    with local_copy(str(clip)) as p:
        assert p == clip
    assert clip.exists() and content_sha256(str(clip)) == file_sha256(clip)
    with pytest.raises(AudioError) as err:
        content_sha256(str(clip.parent / "missing.flac"))
    assert err.value.kind == "unreadable"


def test_remote_listing_without_etags_stamps_the_modification_time():
    """fsspec's in-memory filesystem has no ETags: the stamp is its modification time."""
    import fsspec

    base = f"memory://discovery-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    fs.pipe({f"{base}/x/a.wav": b"RIFF1234", f"{base}/x/.h.wav": b"h", f"{base}/y.csv": b"a,b"})
    try:
        found = {f.path.rsplit("/", 1)[-1]: f for f in iter_discover(base)}
        assert found["a.wav"].path == f"memory:///{base.removeprefix('memory://')}/x/a.wav"
        assert found["a.wav"].status == "audio" and found["a.wav"].size_bytes == 8 and found["a.wav"].stamp
        time.sleep(0.01)
        fs.pipe(f"{base}/x/a.wav", b"RIFF5678")  # same size, new content: the stamp changes
        assert next(f for f in iter_discover(base) if f.path.endswith("/a.wav")).stamp != found["a.wav"].stamp
        assert (found[".h.wav"].status, found[".h.wav"].reason) == ("skipped", HIDDEN_FILE)
        assert (found["y.csv"].status, found["y.csv"].reason) == ("skipped", REMOTE_NOT_AUDIO)
    finally:
        fs.rm(base, recursive=True)


# ----------------------------------------------------------------------------- S3 (moto on 127.0.0.1)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is a test dependency")
    pytest.importorskip("s3fs", reason="s3fs reads s3:// corpora")
    port = _free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def _s3_env(endpoint: str) -> dict[str, str]:
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


@pytest.fixture
def s3(monkeypatch, moto_endpoint):
    """A boto3 client on the moto server, and this process's environment pointing s3fs at it."""
    import boto3
    import s3fs

    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    for var, value in _s3_env(moto_endpoint).items():
        monkeypatch.setenv(var, value)
    s3fs.S3FileSystem.clear_instance_cache()
    yield boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def bucket(s3, ravdess_dir) -> dict:
    """A bucket with two real clips under corpus/, a hidden clip, a hidden folder and a text file."""
    name = f"corpus-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    one, two = _clips(ravdess_dir, 2)
    files = {"corpus/one.flac": one, "corpus/sub/two.flac": two, "corpus/.hidden.flac": one,
             "corpus/.git/three.flac": two}
    for key, path in files.items():
        s3.upload_file(str(path), name, key)
    s3.put_object(Bucket=name, Key="corpus/readme.txt", Body=b"recorded in studio B\n")
    return {"name": name, "root": f"s3://{name}/corpus", "local": files, "client": s3}


def test_s3_listing_has_urls_sizes_and_etags(bucket):
    root, name = bucket["root"], bucket["name"]
    found = list(iter_discover(root + "/"))
    assert [(f.path, f.status, f.reason) for f in found] == [
        (f"{root}/.git", "skipped", HIDDEN_FOLDER),
        (f"{root}/.hidden.flac", "skipped", HIDDEN_FILE),
        (f"{root}/one.flac", "audio", ""),
        (f"{root}/readme.txt", "skipped", REMOTE_NOT_AUDIO),
        (f"{root}/sub/two.flac", "audio", ""),
    ]
    for f in found[2], found[4]:
        local = bucket["local"][f.path.removeprefix(f"s3://{name}/")]
        assert f.size_bytes == local.stat().st_size
        assert f.stamp == hashlib.md5(local.read_bytes()).hexdigest()  # a one-part upload's ETag
        head = bucket["client"].head_object(Bucket=name, Key=f.path.removeprefix(f"s3://{name}/"))
        assert f.stamp == head["ETag"].strip('"')


def test_s3_discovery_streams_and_sees_new_objects(bucket, ravdess_dir):
    """The first entry comes out before sub/ is listed: an object put into sub/ after it is found."""
    late = f"{bucket['root']}/sub/late.flac"
    stream = iter_discover(bucket["root"])
    assert next(stream).path == f"{bucket['root']}/.git"
    bucket["client"].upload_file(str(_clips(ravdess_dir, 3)[2]), bucket["name"], "corpus/sub/late.flac")
    assert [f.path for f in stream if f.status == "audio"] == [f"{bucket['root']}/one.flac", late,
                                                               f"{bucket['root']}/sub/two.flac"]
    # a later discovery in the same process (a scheduler's next run) lists afresh, not from a cache
    bucket["client"].put_object(Bucket=bucket["name"], Key="corpus/newest.wav", Body=b"RIFF")
    assert f"{bucket['root']}/newest.wav" in [f.path for f in iter_discover(bucket["root"])]


def test_s3_roots_are_normalised_and_a_missing_bucket_is_named(bucket):
    assert resolve_root(bucket["root"] + "/") == bucket["root"]
    missing = f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/corpus"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: no such folder or bucket \\(.+\\)$"):
        resolve_root(missing)
    with pytest.raises(FileNotFoundError, match="no such folder or bucket \\(it is a file\\)"):
        resolve_root(bucket["root"] + "/one.flac")


def test_s3_missing_credentials_are_the_reason_given(bucket, monkeypatch):
    import s3fs

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        monkeypatch.delenv(var, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    with pytest.raises(FileNotFoundError, match="no such folder or bucket \\(.*credentials"):
        resolve_root(bucket["root"])


def test_s3_local_copy_decodes_like_the_original_and_is_deleted(bucket, tmp_path):
    url = f"{bucket['root']}/sub/two.flac"
    original = decode_audio(bucket["local"]["corpus/sub/two.flac"])
    with local_copy(url, tmp_dir=tmp_path) as p:
        assert p.suffix == ".flac" and p.parent == tmp_path
        copy = decode_audio(p)
    assert not p.exists() and list(tmp_path.iterdir()) == []
    np.testing.assert_array_equal(copy.samples, original.samples)
    assert copy.samples.size > 0

    with pytest.raises(RuntimeError, match="boom"), local_copy(url, tmp_dir=tmp_path) as p:
        raise RuntimeError("boom")  # the caller's own error passes through; the copy is still deleted
    assert list(tmp_path.iterdir()) == []

    with pytest.raises(AudioError) as err, local_copy(f"{bucket['root']}/gone.flac", tmp_dir=tmp_path):
        pass
    assert err.value.kind == "unreadable" and err.value.reason.startswith(f"cannot read {bucket['root']}/gone.flac: ")
    assert list(tmp_path.iterdir()) == []


def test_s3_content_sha256_matches_the_local_file(bucket):
    for key, local in bucket["local"].items():
        assert content_sha256(f"s3://{bucket['name']}/{key}") == file_sha256(local)
    with pytest.raises(AudioError) as err:
        content_sha256(f"{bucket['root']}/gone.flac")
    assert err.value.kind == "unreadable"


def test_fsspec_config_variables_also_reach_a_local_endpoint(bucket, moto_endpoint):
    """The other documented convention, read when fsspec is imported: FSSPEC_S3_* in a new process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ACCESS", "AWS_SECRET", "AWS_ENDPOINT"))}
    env.update(FSSPEC_S3_ENDPOINT_URL=moto_endpoint, FSSPEC_S3_KEY="testing", FSSPEC_S3_SECRET="testing")
    code = ("import json, sys; from flows.discovery import iter_discover; "
            "print(json.dumps([f.path for f in iter_discover(sys.argv[1]) if f.status == 'audio']))")
    out = subprocess.run([sys.executable, "-c", code, bucket["root"]], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [f"{bucket['root']}/one.flac",
                                                               f"{bucket['root']}/sub/two.flac"]


@pytest.mark.slow
def test_an_s3_corpus_is_ingested_by_dask_workers_and_a_rerun_reads_nothing(bucket, tmp_path, tiny_hubert_dir,
                                                                             monkeypatch):
    """The workers (a local:2 cluster, with the same S3 environment) fetch the objects; the rerun knows
    them by their ETags without downloading or hashing anything."""
    from flows import discovery
    from flows.ingest import ingest_folder
    from warehouse import read_df

    root = bucket["root"]
    config = Config().replace(emotion_model=str(tiny_hubert_dir), whisper_model="none", explain="fast",
                              db=str(tmp_path / "ev.duckdb"), data_dir=str(tmp_path / "data"), cluster="local:2")
    first = ingest_folder(root, options=config)
    assert (first.status, first.files_ok, first.files_failed, first.files_skipped) == ("completed", 2, 0, 3)
    stored = read_df("SELECT path, status, size_bytes, stamp FROM files WHERE status = 'ok' ORDER BY path",
                     db=config.db)
    assert stored["path"].tolist() == [f"{root}/one.flac", f"{root}/sub/two.flac"]
    assert (stored["size_bytes"] > 0).all() and stored["stamp"].str.len().eq(32).all()  # ETags
    chunks = read_df("SELECT count(*) AS n FROM chunks JOIN files USING (file_id) WHERE path LIKE 's3://%'",
                     db=config.db)
    assert int(chunks["n"][0]) >= 2

    def no_download(*args, **kwargs):
        raise AssertionError("an unchanged object was read again")

    monkeypatch.setattr(discovery, "local_copy", no_download)
    monkeypatch.setattr(discovery, "content_sha256", no_download)
    again = ingest_folder(root, options=config.replace(cluster=""))
    assert (again.status, again.files_ok, again.files_unchanged) == ("completed", 0, 2)
