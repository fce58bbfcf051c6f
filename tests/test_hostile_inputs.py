"""Hostile inputs, one case per row of ``CASES``: files from strangers, interrupted and failing writes,
decompression bombs and images of every kind.

Each case states what must hold; files from strangers must not run code (a payload that would
create a marker file is planted and the marker checked), run folders and shard sets must never be
silently replaced or mixed, and every failure must end in one line naming the file and what to do.
"""

from __future__ import annotations

import errno
import io
import json
import multiprocessing
import os
import shutil
import signal
import struct
import subprocess
import zipfile
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_tree, write_folder_dataset
from PIL import Image

from fgvc.cli import main
from fgvc.config import DataConfig, load_config
from fgvc.data.formats import read_dataset
from fgvc.data.images import decode_image_bytes, load_image, load_image_tensor, to_rgb
from fgvc.data.loader import make_dataset, make_loader
from fgvc.data.records import Sample
from fgvc.data.shards import write_shards
from fgvc.data.splits import prepare_splits
from fgvc.data.verify import verify
from fgvc.checkpoint import load_checkpoint, save_atomic
from fgvc.errors import ConfigError, DataError, FgvcError

BOMB_SIDE = 12000  # 144 M pixels: over PIL's limit (89 M), under the 2x at which PIL refuses by itself


# --- shared material -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A finished one-epoch run of a tiny folder dataset (3 classes; 18 train, 6 val, 6 test images)."""
    tmp = tmp_path_factory.mktemp("trained")
    data = write_folder_dataset(tmp / "data", classes=3, train_per_class=8, test_per_class=2, size=16)
    config = tmp / "run.yaml"
    config.write_text(yaml.safe_dump(tiny_tree(data, tmp / "runs", data={"image_size": 16},
                                               schedule={"epochs": 1, "warmup_epochs": 0.5})))
    assert main(["-q", "train", str(config)]) == 0
    return {"config": config, "data": data, "run": tmp / "runs" / "tiny"}


@pytest.fixture(scope="module")
def png_bomb(tmp_path_factory) -> Path:
    """A 12000 x 12000 greyscale PNG of 140 kB, written row by row (no 144 MB image in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), b"\x00" * (BOMB_SIDE + 1)  # filter byte + one row of black
    idat = b"".join(z.compress(row) for _ in range(BOMB_SIDE)) + z.flush()
    path = tmp_path_factory.mktemp("bomb") / "bomb.png"
    header = struct.pack(">IIBBBBB", BOMB_SIDE, BOMB_SIDE, 8, 0, 0, 0, 0)  # 8-bit greyscale
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


@dataclass
class Env:
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture
    request: pytest.FixtureRequest

    def fixture(self, name: str):
        return self.request.getfixturevalue(name)

    def fgvc(self, *argv) -> tuple[int, list[str]]:
        """Exit code and stderr lines of ``fgvc -q ARGV``."""
        self.capsys.readouterr()
        code = main(["-q", *map(str, argv)])
        return code, self.capsys.readouterr().err.strip().splitlines()

    def fails_in_one_line(self, *argv) -> str:
        code, err = self.fgvc(*argv)
        assert code == 2 and len(err) == 1 and err[0].startswith("fgvc: error: "), (code, err)
        return err[0]

    def copy_of(self, folder: Path, name: str = "copy") -> Path:
        return Path(shutil.copytree(folder, self.tmp / name))


def planted_payload(marker: Path):
    """An object whose unpickling runs ``touch marker`` — what a malicious file carries."""
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    return Payload()


def tiny_run_config(env: Env, output_dir: Path, epochs: int = 1, **data) -> Path:
    trained = env.fixture("trained")
    tree = yaml.safe_load(trained["config"].read_text())
    tree["output_dir"], tree["schedule"]["epochs"] = str(output_dir), epochs
    tree["data"] |= data
    path = env.tmp / f"run_{len(list(env.tmp.glob('run_*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


@contextmanager
def mounted_tmpfs(path: Path, options: str):
    """A tmpfs at ``path`` (root and a kernel that allows it), else the case is skipped with the reason."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                          text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); the injected "
                    "ENOSPC and the file-in-the-path cases cover the same code")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# --- checkpoints -----------------------------------------------------------------------------------

def malicious_checkpoint(env: Env, command: str) -> None:
    """A checkpoint whose pickle calls os.system is refused, naming it, by every command; nothing runs."""
    trained, marker = env.fixture("trained"), env.tmp / "pwned"
    evil = env.tmp / "evil.pt"
    torch.save({"model": {}, "config": planted_payload(marker), "classes": ["a"]}, evil)
    image = next((trained["data"] / "test").rglob("*.png"))
    if command == "predict":
        line = env.fails_in_one_line("predict", "--checkpoint", evil, image)
    elif command == "evaluate":
        line = env.fails_in_one_line("evaluate", trained["config"], f"checkpoint={evil}")
    elif command == "export":
        line = env.fails_in_one_line("export", "--checkpoint", evil, "--out", env.tmp / "evil.onnx")
    elif command == "analyze":
        line = env.fails_in_one_line("analyze", "cam", "--checkpoint", evil, image, "--out", env.tmp / "cam.png")
    else:  # resume: the run's last.pt replaced by the malicious file
        runs = env.tmp / "runs"
        env.copy_of(trained["run"], "runs/tiny")
        shutil.copy(evil, runs / "tiny" / "checkpoints" / "last.pt")
        line = env.fails_in_one_line("train", tiny_run_config(env, runs), "train.resume=true")
    assert "posix.system" in line and "refused" in line, line
    assert not marker.exists()


def damaged_checkpoint(env: Env) -> None:
    """One flipped bit inside a tensor of best.pt (torch itself reads it without a word) is detected."""
    trained = env.fixture("trained")
    damaged = env.tmp / "best.pt"
    data = bytearray((trained["run"] / "checkpoints" / "best.pt").read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)  # the largest tensor's bytes
    name_len, extra_len = struct.unpack("<HH", data[record.header_offset + 26: record.header_offset + 30])
    data[record.header_offset + 30 + name_len + extra_len + record.file_size // 2] ^= 0x10
    damaged.write_bytes(data)
    line = env.fails_in_one_line("evaluate", trained["config"], f"checkpoint={damaged}",
                                 f"output_dir={env.tmp}")
    assert "damaged" in line and str(damaged) in line, line


# --- datasets --------------------------------------------------------------------------------------

def malicious_cifar_pickle(env: Env, which: str) -> None:
    """A CIFAR pickle calling os.system is refused with a one-line DataError; nothing runs."""
    import pickle

    root, marker = env.tmp / "cifar-10-batches-py", env.tmp / "pwned"
    root.mkdir()
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"filenames": [b"a.png", b"b.png"]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(pickle.dumps(batch, protocol=2))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2))
    payload = planted_payload(marker)
    (root / which).write_bytes(pickle.dumps({b"label_names": payload, b"data": payload}, protocol=2))
    config = env.tmp / "cifar.yaml"
    config.write_text(yaml.safe_dump({"data": {"format": "cifar10", "root": str(root)}}))
    line = env.fails_in_one_line("data", "verify", config)
    assert f"{root / which}: refused" in line and "posix.system" in line, line
    assert not marker.exists()


def bom_csv_manifest(env: Env) -> None:
    """A CSV manifest saved by a spreadsheet program (UTF-8 with a byte-order mark) reads as any other."""
    folder = env.fixture("trained")["data"] / "train"
    rows = [f"{p.relative_to(folder)},{p.parent.name.replace('class_', 'c')}"
            for p in sorted(folder.rglob("*.png"))]
    manifest = env.tmp / "manifest.csv"
    manifest.write_bytes("\ufeffpath,label\n".encode("utf-8") + "\n".join(rows).encode())
    for p in folder.rglob("*.png"):
        (env.tmp / p.relative_to(folder)).parent.mkdir(exist_ok=True)
        shutil.copy(p, env.tmp / p.relative_to(folder))
    source = read_dataset("manifest", manifest)
    assert source.classes == ["c0", "c1", "c2"] and sum(len(s) for s in source.splits.values()) == len(rows)


def yaml_with_a_tab(env: Env) -> None:
    """A YAML syntax error names the file, line, column and the problem (a tab says "tab")."""
    config = env.tmp / "tabbed.yaml"
    config.write_text("data:\n  format: folder\n\troot: x\n")
    line = env.fails_in_one_line("train", config)
    assert str(config) in line and "line 3, column 1" in line and "tab" in line, line


# --- run folders -----------------------------------------------------------------------------------

def protected_run_folder(env: Env, keep: str) -> None:
    """A run folder with a checkpoint, metrics or report (but no last.pt) is not trained over."""
    runs = env.tmp / "runs"
    run = env.copy_of(env.fixture("trained")["run"], "runs/tiny")
    outputs = ("metrics.csv", "metrics.jsonl", "report.json", "report.md")
    for path in [*run.glob("checkpoints/*.pt"), *(run / name for name in outputs)]:
        if path.name != keep:
            path.unlink()
    before = (run / ("checkpoints/" if keep.endswith(".pt") else "") / keep).read_bytes()
    line = env.fails_in_one_line("train", tiny_run_config(env, runs))
    assert "already holds a run" in line and "--overwrite" in line, line
    assert (run / ("checkpoints/" if keep.endswith(".pt") else "") / keep).read_bytes() == before


def resume_with_nothing_to_resume(env: Env) -> None:
    """train.resume=true in a folder without last.pt is an error, not a silent fresh start."""
    line = env.fails_in_one_line("train", tiny_run_config(env, env.tmp / "runs"), "train.resume=true")
    assert "train.resume=true" in line and "last.pt" in line, line
    assert not (env.tmp / "runs" / "tiny" / "checkpoints").exists()


def run_name_leaving_output_dir(env: Env) -> None:
    """name=../../x would write outside output_dir: refused before anything is written."""
    runs = env.tmp / "a" / "b" / "runs"
    line = env.fails_in_one_line("train", tiny_run_config(env, runs), "name=../../escaped")
    assert "'name'" in line and "output_dir" in line, line
    assert not (env.tmp / "a" / "escaped").exists()
    with pytest.raises(ConfigError):
        load_config(None, ["data.root=x", "name=/tmp/elsewhere"])


# --- full disks and unwritable places ---------------------------------------------------------------

def disk_full_writing_last_pt(env: Env) -> None:
    """ENOSPC while torch.save writes the second last.pt: one line saying so, the previous one intact."""
    real_save = torch.save
    writes = []

    def save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "optimizer" in obj:
            writes.append(obj["state"]["epoch"])
            if len(writes) == 2:  # the end of epoch 2
                f.write(b"\0" * 4096)
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    env.monkeypatch.setattr(torch, "save", save)
    runs = env.tmp / "runs"
    line = env.fails_in_one_line("train", tiny_run_config(env, runs, epochs=2))
    last = runs / "tiny" / "checkpoints" / "last.pt"
    assert f"disk full writing {last}; the previous last.pt (epoch 1) is intact" in line, line
    assert load_checkpoint(last)["state"]["epoch"] == 1
    assert not list(last.parent.glob(".*.tmp"))


def disk_full_on_a_real_tmpfs(env: Env) -> None:
    """The same on a real 1 MB file system filled up: the OS's own ENOSPC, through torch.save."""
    with mounted_tmpfs(env.tmp / "small", "size=1m") as disk:
        save_atomic({"model": {"w": torch.zeros(1000)}, "state": {"epoch": 1}}, disk / "last.pt")
        with open(disk / "filler", "wb") as filler:
            try:
                while True:
                    filler.write(b"\0" * 65536)
                    filler.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        with pytest.raises(FgvcError) as info:
            save_atomic({"model": {"w": torch.zeros(100_000)}, "state": {"epoch": 2}}, disk / "last.pt")
        expected = f"disk full writing {disk / 'last.pt'}; the previous last.pt (epoch 1) is intact"
        assert expected in str(info.value)
        assert load_checkpoint(disk / "last.pt")["state"]["epoch"] == 1


def unwritable_output_dir(env: Env, where: str) -> None:
    """An output_dir that cannot be created or written: one line naming the place and the reason."""
    if where == "read-only file system":
        with mounted_tmpfs(env.tmp / "ro", "ro,size=1m") as disk:
            line = env.fails_in_one_line("train", tiny_run_config(env, disk / "runs"))
        assert str(disk / "runs") in line and "read-only file system" in line, line
    else:  # a file where a folder of the path should be
        (env.tmp / "afile").write_text("x")
        line = env.fails_in_one_line("train", tiny_run_config(env, env.tmp / "afile" / "runs"))
        assert str(env.tmp / "afile") in line and "not a directory" in line, line


# --- shards ----------------------------------------------------------------------------------------

def shard_and_die_after_third_tar(config: Path, out: Path) -> None:
    """In a forked child: `fgvc data shard --max-per-shard 3`, SIGKILLed once its third tar is closed."""
    import webdataset as wds

    real_close, closed = wds.TarWriter.close, []

    def close(self):
        real_close(self)
        closed.append(self)
        if len(closed) == 3:
            os.kill(os.getpid(), signal.SIGKILL)

    wds.TarWriter.close = close
    main(["-q", "data", "shard", str(config), str(out), "--max-per-shard", "3"])


def killed_reshard(env: Env) -> None:
    """`fgvc data shard` over an existing shard set, killed after its third tar: the folder still reads
    as the old set (or verify reports the mix); a later complete re-shard leaves no stray tar."""
    trained = env.fixture("trained")
    out = env.tmp / "shards"
    assert env.fgvc("data", "shard", trained["config"], out, "--max-per-shard", "4")[0] == 0
    shard_cfg = DataConfig(format="shards", root=str(out), image_size=16, num_workers=0)
    old = [(s.path, s.label) for s in prepare_splits(shard_cfg).train]
    child = multiprocessing.get_context("fork").Process(target=shard_and_die_after_third_tar,
                                                        args=(trained["config"], out))
    child.start()
    child.join(300)
    assert child.exitcode == -signal.SIGKILL
    problems = verify(shard_cfg, check_images=False, progress=False)["problems"]
    assert problems or [(s.path, s.label) for s in prepare_splits(shard_cfg).train] == old, problems
    assert env.fgvc("data", "shard", trained["config"], out, "--max-per-shard", "3")[0] == 0
    named = {s["name"] for role in ("train", "val", "test")
             for s in json.loads((out / f"{role}.json").read_text())["shards"]}
    assert {p.name for p in out.iterdir() if ".tar" in p.name} == named
    assert verify(shard_cfg, check_images=False, progress=False)["problems"] == []


def damaged_shard(env: Env, damage: str) -> None:
    """A truncated tar, or a file that is no tar at all, is a DataError naming the shard when read."""
    trained = env.fixture("trained")
    out = env.tmp / "shards"
    assert env.fgvc("data", "shard", trained["config"], out)[0] == 0
    tar = out / json.loads((out / "test.json").read_text())["shards"][0]["name"]
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2 + 100] if damage == "truncated" else b"<html>not found</html>" * 50)
    cfg = DataConfig(format="shards", root=str(out), image_size=16, num_workers=0)
    with pytest.raises(DataError, match=f"{tar}: not a readable tar shard"):
        list(make_loader(cfg, make_dataset(cfg, prepare_splits(cfg).test, train=False), train=False))
    assert any(str(tar) in p for p in verify(cfg, check_images=False, progress=False)["problems"])


# --- decompression bombs, on every decode path -------------------------------------------------------

def folder_with(env: Env, image: Path, name: str) -> Path:
    """A copy of the tiny dataset with ``image`` as one more train image of class_0."""
    data = env.copy_of(env.fixture("trained")["data"], "data")
    shutil.copy(image, data / "train" / "class_0" / name)
    return data


def bomb(env: Env, path: str) -> None:
    """Over the pixel limit, an image is a bad image: skipped and counted, or a one-line error."""
    if path in ("train loader (JPEG, tensor decoder)", "shard reader"):
        jpeg = env.tmp / "big.jpg"  # 64 x 64, over a limit set to 1000 pixels
        Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(jpeg)
        data, name, limit = folder_with(env, jpeg, "zz_big.jpg"), "zz_big.jpg", 1000
    else:
        data, name, limit = folder_with(env, env.fixture("png_bomb"), "zz_bomb.png"), "zz_bomb.png", None
    over = {"max_image_pixels": limit} if limit else {}
    cfg = DataConfig(format="folder", root=str(data), image_size=16, num_workers=0, bad_images="skip",
                     val_fraction=0.25, **over)
    if path == "load_image (PIL: verify, predict, CAM)":
        with pytest.raises(DataError, match=f"{name}: unreadable image .*over the limit of 89,478,485"):
            load_image(Sample(path=str(data / "train" / "class_0" / name), label=0))
    elif path == "data verify":
        problems = verify(cfg, progress=False)["problems"]
        assert any(name in p and "over the limit" in p for p in problems), problems
    elif path == "data shard":
        indices = write_shards(prepare_splits(cfg), env.tmp / "shards", bad_images="skip", progress=False)
        skipped = [m for index in indices.values() for m in index["skipped"]]
        assert len(skipped) == 1 and name in skipped[0] and "over the limit" in skipped[0], skipped
    elif path == "shard reader":  # written with the default limit, read with a lower one
        write_shards(prepare_splits(cfg), env.tmp / "shards", progress=False)  # the default limit
        shard_cfg = cfg.model_copy(update={"format": "shards", "root": str(env.tmp / "shards")})
        samples = prepare_splits(shard_cfg)
        batches = [b for role in ("train", "val", "test") for b in make_loader(
            shard_cfg, make_dataset(shard_cfg, samples.samples(role), train=False), train=False)]
        skipped = [m for b in batches for m in b["skipped"]]
        assert len(skipped) == 1 and name in skipped[0] and "over the limit of 1,000" in skipped[0], skipped
    else:  # the training loader: ImageDataset through the tensor decoding path
        train = prepare_splits(cfg)
        samples = [s for role in ("train", "val", "test") for s in train.samples(role)]
        loader = make_loader(cfg, make_dataset(cfg, samples, train=False), train=False)
        skipped = [m for b in loader for m in b["skipped"]]
        assert len(skipped) == 1 and name in skipped[0] and "over the limit" in skipped[0], skipped


# --- evaluation reports ----------------------------------------------------------------------------

def skipped_evaluation_images(env: Env) -> None:
    """An unreadable test image under bad_images=skip is counted and named in report.json/report.md."""
    trained = env.fixture("trained")
    data = env.copy_of(trained["data"], "data")
    bad = sorted((data / "test").rglob("*.png"))[0]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    best = trained["run"] / "checkpoints" / "best.pt"
    code, _ = env.fgvc("evaluate", trained["config"], f"data.root={data}", "data.bad_images=skip",
                       f"output_dir={env.tmp / 'runs'}", f"checkpoint={best}")
    assert code == 0
    report = json.loads((env.tmp / "runs" / "tiny" / "report.json").read_text())
    test = report["test"]
    assert (test["num_samples"], test["num_images"], len(test["skipped"])) == (5, 6, 1)
    assert str(bad) in test["skipped"][0]
    md = (env.tmp / "runs" / "tiny" / "report.md").read_text()
    assert "Accuracy over 5 of 6 test images" in md and str(bad) in md


def unidentified_bytes_name_the_file(env: Env) -> None:
    """Undecodable bytes: the message names the file, not an <_io.BytesIO object at 0x...>."""
    junk = env.tmp / "photo.jpg"
    junk.write_bytes(b"no image, just text " * 20)
    with pytest.raises(ValueError) as info:
        decode_image_bytes(junk.read_bytes())
    assert "BytesIO" not in str(info.value)
    with pytest.raises(DataError) as info:
        load_image_tensor(Sample(path=str(junk), label=0, id="7"))
    message = str(info.value)
    assert message.startswith(f"{junk}: unreadable image (record 7): ") and "BytesIO" not in message


def sixteen_bit_greyscale(env: Env) -> None:
    """A 16-bit PNG (mode I;16) keeps its values, scaled to 8 bits, on the PIL and tensor paths."""
    values = np.array([[0, 257 * 40, 257 * 128, 65535]], np.uint16).repeat(3, 0)
    path = env.tmp / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    expected = np.array([0, 40, 128, 255], np.uint8)
    pil = np.asarray(load_image(Sample(path=str(path), label=0)))
    tensor = load_image_tensor(Sample(path=str(path), label=0)).permute(1, 2, 0).numpy()
    for pixels in (pil, tensor):
        assert (pixels == expected[None, :, None]).all(), pixels[0]


CASES = [
    *[pytest.param(partial(malicious_checkpoint, command=c), id=f"checkpoint-pickle-calls-os.system:{c}")
      for c in ("predict", "evaluate", "export", "analyze", "resume")],
    pytest.param(damaged_checkpoint, id="checkpoint-bit-flip"),
    *[pytest.param(partial(malicious_cifar_pickle, which=which), id=f"cifar-pickle-calls-os.system:{which}")
      for which in ("batches.meta", "data_batch_1")],
    pytest.param(partial(protected_run_folder, keep="best.pt"), id="run-folder-with-best.pt"),
    pytest.param(partial(protected_run_folder, keep="metrics.csv"), id="run-folder-with-metrics"),
    pytest.param(partial(protected_run_folder, keep="report.json"), id="run-folder-with-report"),
    pytest.param(resume_with_nothing_to_resume, id="resume-without-last.pt"),
    pytest.param(run_name_leaving_output_dir, id="run-name-../../x"),
    pytest.param(disk_full_writing_last_pt, id="ENOSPC-injected-writing-last.pt"),
    pytest.param(disk_full_on_a_real_tmpfs, id="ENOSPC-on-a-full-tmpfs"),
    pytest.param(partial(unwritable_output_dir, where="read-only file system"), id="output-dir-read-only"),
    pytest.param(partial(unwritable_output_dir, where="file in the path"), id="output-dir-under-a-file"),
    pytest.param(killed_reshard, id="re-shard-killed-midway"),
    pytest.param(partial(damaged_shard, damage="truncated"), id="shard-truncated"),
    pytest.param(partial(damaged_shard, damage="not a tar"), id="shard-not-a-tar"),
    *[pytest.param(partial(bomb, path=path), id=f"bomb:{path}") for path in (
        "train loader (PNG, PIL)", "train loader (JPEG, tensor decoder)",
        "load_image (PIL: verify, predict, CAM)", "data verify", "data shard", "shard reader")],
    pytest.param(skipped_evaluation_images, id="skipped-test-images-in-report"),
    pytest.param(unidentified_bytes_name_the_file, id="undecodable-bytes-message"),
    pytest.param(sixteen_bit_greyscale, id="16-bit-greyscale-png"),
    pytest.param(bom_csv_manifest, id="csv-manifest-with-BOM"),
    pytest.param(yaml_with_a_tab, id="yaml-with-a-tab"),
]


@pytest.mark.parametrize("case", CASES)
def test_hostile_input(case, tmp_path, monkeypatch, capsys, request):
    case(Env(tmp_path, monkeypatch, capsys, request))


# --- not hostile, but the same promises ---------------------------------------------------------------

def test_a_checkpoint_of_an_older_fgvc_still_loads_and_resumes(trained, tmp_path):
    """Before checksums, last.pt held NumPy's RNG state as a NumPy array and no checksum, and its
    config had settings since retired (``eval.test_at_end``): it loads (those arrays are the one thing
    beyond plain values admitted), evaluates, and a run resumes from it."""
    runs = tmp_path / "runs"
    run = Path(shutil.copytree(trained["run"], runs / "tiny"))
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    for state in [ckpt["rng"], *ckpt["rng_ranks"]]:
        name, keys, *rest = state["numpy"]
        state["numpy"] = (name, keys.numpy().astype(np.uint32), *rest)  # as np.random.get_state() gives it
    ckpt["config"]["eval"]["test_at_end"] = True
    torch.save(ckpt, run / "checkpoints" / "last.pt")  # no checksum: the older format
    assert "checksum" not in torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["epoch"] == 1
    assert main(["-q", "evaluate", str(trained["config"]), f"checkpoint={run / 'checkpoints' / 'last.pt'}",
                 f"output_dir={tmp_path / 'eval'}"]) == 0
    tree = yaml.safe_load(trained["config"].read_text())
    tree["output_dir"], tree["schedule"]["epochs"] = str(runs), 2
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(tree))
    assert main(["-q", "train", str(tmp_path / "run.yaml"), "train.resume=true"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["state"]["epoch"] == 2


def modes() -> dict[str, tuple[Image.Image, np.ndarray]]:
    """Per PIL mode: an image of that mode and the 8-bit RGB it must become."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    alpha = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    cmyk = rng.integers(0, 256, (4, 5, 4), dtype=np.uint8)
    deep = rng.integers(0, 65536, (4, 5))
    unit = rng.random((4, 5)).astype(np.float32)

    def grey3(values):
        return np.repeat(np.asarray(values, np.uint8)[..., None], 3, -1)

    def on_white(colour, a):
        a = a[..., None].astype(np.float64) / 255
        return np.rint(colour * a + 255 * (1 - a)).astype(np.uint8)

    palette = Image.fromarray(rgb).convert("P")
    pa = Image.new("PA", (5, 4))
    pa.putpalette(palette.getpalette())
    pa.putdata(list(zip(np.asarray(palette).ravel().tolist(), alpha.ravel().tolist())))
    y, cb, cr = (rgb[..., i].astype(np.float64) for i in range(3))
    ycbcr = np.stack([y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
                      y + 1.772 * (cb - 128)], -1)
    return {
        "1": (Image.fromarray(grey > 127), grey3(np.where(grey > 127, 255, 0))),
        "L": (Image.fromarray(grey), grey3(grey)),
        "LA": (Image.fromarray(np.stack([grey, alpha], -1), "LA"), on_white(grey3(grey), alpha)),
        "P": (palette, np.asarray(palette.convert("RGB"))),
        "PA": (pa, on_white(np.asarray(palette.convert("RGB")), alpha)),
        "RGB": (Image.fromarray(rgb), rgb),
        "RGBA": (Image.fromarray(np.concatenate([rgb, alpha[..., None]], -1)), on_white(rgb, alpha)),
        "CMYK": (Image.fromarray(cmyk, "CMYK"),  # PIL: (255 - C)(255 - K) / 255, no colour profile
                 np.rint((255.0 - cmyk[..., :3]) * (255.0 - cmyk[..., 3:]) / 255)),
        "YCbCr": (Image.fromarray(rgb, "YCbCr"), np.clip(np.rint(ycbcr), 0, 255)),
        "I;16": (Image.fromarray(deep.astype(np.uint16)), grey3(np.rint(deep / 257))),
        "I": (Image.fromarray(deep.astype(np.int32)), grey3(np.rint(deep / 257))),
        "F": (Image.fromarray(unit), grey3(np.rint(unit * 255))),
    }


@pytest.mark.parametrize("mode", list(modes()))
def test_every_pil_mode_becomes_8_bit_rgb_with_its_values(mode, tmp_path):
    image, expected = modes()[mode]
    assert image.mode == mode
    tolerance = 2 if mode in ("YCbCr", "LA", "PA", "RGBA", "CMYK") else 0  # PIL's fixed-point rounding
    got = to_rgb(image)
    assert got.mode == "RGB" and np.abs(np.asarray(got).astype(int) - expected).max() <= tolerance
    if mode != "PA":  # no file format stores PA; every other mode as a TIFF file, through both decode paths
        path = tmp_path / f"image.tif"
        image.save(path)
        pil = np.asarray(load_image(Sample(path=str(path), label=0))).astype(int)
        tensor = load_image_tensor(Sample(path=str(path), label=0)).permute(1, 2, 0).numpy().astype(int)
        assert np.abs(pil - expected).max() <= tolerance and np.array_equal(pil, tensor)
