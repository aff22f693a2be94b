"""Feature files: the three formats round trip exactly, .pt is DIFT's layout, damage is detected, writes are atomic."""

from __future__ import annotations

import errno
import json
import zipfile

import numpy as np
import pytest
import torch

from vidprop.errors import InputError, WriteError
from vidprop.io import feature_store as store
from vidprop.io.feature_store import (
    FileStatus,
    inspect_file,
    load_features,
    open_video_features,
    read_meta,
    save_features,
    sidecar_path,
    write_index,
)

META = {"model": "tiny", "t": 261, "up_ft_index": 1, "ensemble": 8, "prompt": "", "revision": None, "input_size": [70, 50]}


def _feats(shape=(16, 4, 6), seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(dtype)


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "npz"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_round_trip_is_exact_with_settings(tmp_path, fmt, dtype):
    x = _feats(dtype=dtype)
    path = save_features(tmp_path / f"a.{fmt}", x, META)
    y, meta = load_features(path)
    assert y.dtype == dtype and y.shape == x.shape and torch.equal(y, x)
    assert {k: meta[k] for k in META} == META
    assert meta["shape"] == [16, 4, 6] and meta["save_dtype"] == str(dtype).removeprefix("torch.")
    assert read_meta(path) == meta
    # nothing but the file (and a .pt's sidecar) is left in the folder: no temporary files
    expected = {f"a.{fmt}"} | ({"a.json"} if fmt == "pt" else set())
    assert {p.name for p in tmp_path.iterdir()} == expected


def test_pt_is_what_the_dift_script_writes(tmp_path):
    """extract_dift.py: ft = SDFeaturizer.forward(...) -> (1, C, h, w); torch.save(ft.squeeze(0).cpu(), path)."""
    ft = _feats((1, 16, 4, 6))
    torch.save(ft.squeeze(0).cpu(), tmp_path / "dift.pt")  # the script's own line
    save_features(tmp_path / "ours.pt", ft[0], META)
    ref = torch.load(tmp_path / "dift.pt", weights_only=True)
    ours = torch.load(tmp_path / "ours.pt", weights_only=True)  # a bare tensor, as the script's
    assert isinstance(ours, torch.Tensor) and ours.shape == ref.shape == (16, 4, 6)
    assert ours.dtype == ref.dtype == torch.float32 and ours.device.type == "cpu" and not ours.requires_grad
    assert torch.equal(ours, ref) and ours.is_contiguous()
    assert ours.untyped_storage().nbytes() == ref.untyped_storage().nbytes() == 16 * 4 * 6 * 4
    assert json.loads(sidecar_path(tmp_path / "ours.pt").read_text())["t"] == 261


def test_a_view_of_a_batch_saves_only_its_own_values(tmp_path):
    batch = _feats((4, 16, 4, 6))
    save_features(tmp_path / "one.pt", batch[2], META)
    y = torch.load(tmp_path / "one.pt", weights_only=True)
    assert y.untyped_storage().nbytes() == 16 * 4 * 6 * 4 and torch.equal(y, batch[2])


def test_safetensors_and_npz_hold_the_settings_inside(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    save_features(tmp_path / "a.safetensors", _feats(), META)
    assert torch.equal(load_file(tmp_path / "a.safetensors")["features"], _feats())  # the library's own reader
    assert int.from_bytes((tmp_path / "a.safetensors").read_bytes()[:8], "little") % 8 == 0  # header padded to 8
    with safe_open(str(tmp_path / "a.safetensors"), framework="pt") as f:
        assert list(f.keys()) == ["features"]
        assert json.loads(f.metadata()["vidprop"])["prompt"] == ""
    save_features(tmp_path / "a.npz", _feats(), META)
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["features", "vidprop"]
        assert json.loads(str(z["vidprop"]))["ensemble"] == 8


def test_files_from_elsewhere_load_with_empty_settings(tmp_path):
    torch.save(_feats(), tmp_path / "dift.pt")  # DIFT's script: no sidecar
    x, meta = load_features(tmp_path / "dift.pt")
    assert meta == {} and x.shape == (16, 4, 6)
    assert inspect_file(tmp_path / "dift.pt", META).state == "foreign"


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "npz"])
def test_inspect_finds_complete_different_and_truncated_files(tmp_path, fmt):
    path = save_features(tmp_path / f"a.{fmt}", _feats(), META)
    assert inspect_file(path, META) == FileStatus("complete")
    st = inspect_file(path, {**META, "t": 51})
    assert st.state == "different" and "t: 261 -> 51" in st.reason
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert inspect_file(path, META).state == "corrupt"
    with pytest.raises(InputError, match=f"a.{fmt}"):
        load_features(path)
    path.unlink()
    assert inspect_file(path, META).state == ("corrupt" if fmt == "pt" else "missing")  # a .pt's orphan sidecar


def test_shape_disagreeing_with_the_record_is_corrupt(tmp_path):
    path = save_features(tmp_path / "a.pt", _feats(), META)
    torch.save(_feats((16, 4, 5)), path)
    assert inspect_file(path, META).state == "corrupt"
    with pytest.raises(InputError, match=r"holds a \(16, 4, 5\) tensor but its settings record \(16, 4, 6\)"):
        load_features(path)


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "npz"])
def test_disk_full_leaves_nothing_behind(tmp_path, monkeypatch, fmt):
    """A writer that fills the disk half way: WriteError naming the file, no partial file under any name."""

    def full(fh, tensor, meta_json):
        fh.write(b"\0" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setitem(store._WRITERS, fmt, full)
    with pytest.raises(WriteError, match=rf"a\.{fmt}: .*no space left on device.*partial file was removed"):
        save_features(tmp_path / f"a.{fmt}", _feats(), META)
    assert list(tmp_path.iterdir()) == []


def test_a_full_device_raises_oserror_enospc_through_the_writers():
    """/dev/full fails every write with ENOSPC, as a full disk: the writers let that OSError through."""
    for fmt, writer in store._WRITERS.items():
        with pytest.raises(OSError) as info:
            with open("/dev/full", "wb") as fh:
                writer(fh, _feats(), "{}")
        assert info.value.errno == errno.ENOSPC, fmt


def test_other_write_errors_are_clear(tmp_path, monkeypatch):
    def denied(fh, tensor, meta_json):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setitem(store._WRITERS, "safetensors", denied)
    with pytest.raises(WriteError, match="a.safetensors: could not write the features: Permission denied"):
        save_features(tmp_path / "a.safetensors", _feats(), META)
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_and_tensors(tmp_path):
    with pytest.raises(InputError, match="not a feature file"):
        save_features(tmp_path / "a.txt", _feats(), META)
    with pytest.raises(ValueError, match="float32 or float16"):
        save_features(tmp_path / "a.pt", _feats().double(), META)
    with pytest.raises(InputError, match="no such feature file"):
        load_features(tmp_path / "missing.safetensors")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(InputError, match="junk.npz: cannot read"):
        load_features(tmp_path / "junk.npz")
    with zipfile.ZipFile(tmp_path / "other.npz", "w") as z:
        z.writestr("x.npy", b"")
    with pytest.raises(InputError, match="cannot read|no 'features'"):
        load_features(tmp_path / "other.npz")


def test_video_features_read_a_chunk_at_a_time(tmp_path):
    chunks = [_feats((3, 8, 2, 2), seed=1), _feats((2, 8, 2, 2), seed=2)]
    entries, frames = [], []
    for k, c in enumerate(chunks):
        name = f"chunk_{k:05d}.safetensors"
        save_features(tmp_path / name, c, {"start": 3 * k, "count": len(c)})
        entries.append({"file": name, "start": 3 * k, "count": len(c)})
        frames += [{"index": 3 * k + j, "name": f"{3 * k + j:05d}", "file": name, "offset": j} for j in range(len(c))]
    write_index(tmp_path, {"settings": {"t": 51}, "chunks": entries, "frames": frames})
    video = open_video_features(tmp_path)
    whole = torch.cat(chunks)
    assert len(video) == 5 and video.settings == {"t": 51} and video.names[4] == "00004"
    for i in range(5):
        assert torch.equal(video.frame(i), whole[i])
    assert torch.equal(video.frame(-1), whole[4])
    assert torch.equal(torch.stack(list(video)), whole)
    x, index = load_features(tmp_path)
    assert torch.equal(x, whole) and index["settings"] == {"t": 51}
    x2, _ = load_features(tmp_path / "index.json")
    assert torch.equal(x2, whole)
    with pytest.raises(IndexError):
        video.frame(5)
    with pytest.raises(InputError, match="no index.json"):
        open_video_features(tmp_path / "nowhere")
