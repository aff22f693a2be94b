"""extract_images on the tiny random SD: saved features equal the extractor's (as DIFT's script), resume, errors; inputs sorted into images or videos."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch
from PIL import Image

from vidprop.errors import ConfigError, InputError, OutputExistsError, WriteError
from vidprop.io import feature_store as store
from vidprop.io.feature_store import load_features, read_meta
from vidprop.tasks.extract import (
    FeatureSaver,
    SaveOptions,
    classify_inputs,
    extract_images,
    upsample_features,
)


def _dift_script_features(ext, path, size=(64, 64)):
    """What extract_dift.py computes: PIL open, convert('RGB'), resize (PIL's default: bicubic), one image."""
    img = Image.open(path).convert("RGB").resize(size)
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].contiguous()  # (1, 3, H, W) uint8, as PILToTensor
    return ext.extract(x, indices=[0])  # (1, C, h, w)


def test_images_saved_features_equal_the_extractors_output(saver, images, tmp_path):
    out = tmp_path / "out"
    res = extract_images(sorted(images.iterdir()), out, saver=saver)
    assert [p.name for p in res.written] == ["a.pt", "b.pt", "c.pt"] and res.frames_extracted == 3
    for name in "abc":
        ref = _dift_script_features(saver.extractor, images / f"{name}.png")  # (1, 16, 4, 4)
        torch.save(ref.squeeze(0).cpu(), tmp_path / "ref.pt")  # the script's save
        ours = torch.load(out / f"{name}.pt", weights_only=True)
        dift = torch.load(tmp_path / "ref.pt", weights_only=True)
        assert ours.shape == dift.shape == (16, 4, 4) and ours.dtype == dift.dtype == torch.float32
        assert torch.equal(ours, dift)  # exactly
        _, meta = load_features(out / f"{name}.pt")
        w, h = Image.open(images / f"{name}.png").size
        assert meta["input_size"] == [w, h] and meta["model_size"] == [64, 64]
        assert (meta["t"], meta["up_ft_index"], meta["ensemble"], meta["prompt"], meta["seed"]) == (261, 1, 2, "", 0)
        assert (meta["stride"], meta["channels"], meta["feature_size"], meta["backbone"]) == (16, 16, [4, 4], "sd")
        assert meta["resize"] == ("none" if (w, h) == (64, 64) else "pil_bicubic")
        assert meta["model"] == str(saver.config.extractor.model) and meta["source"].endswith(f"{name}.png")
        assert meta["dtype"] == "float32" and meta["save_dtype"] == "float32" and meta["vidprop_version"]


def test_image_features_in_memory_equal_the_saved_ones(saver, images, tmp_path):
    extract_images([images / "c.png"], tmp_path / "c.pt", saver=saver)
    image = np.array(Image.open(images / "c.png").convert("RGB"))
    assert torch.equal(saver.image_features(image), torch.load(tmp_path / "c.pt", weights_only=True))
    with pytest.raises(InputError, match="too small"):
        saver.image_features(np.zeros((8, 64, 3), np.uint8))


def test_batching_does_not_change_an_images_features(saver, images, tmp_path):
    extract_images(sorted(images.iterdir()), tmp_path / "one", saver=saver, options=SaveOptions(format="npz"))
    batched = FeatureSaver(saver.config.override(extractor={"batch_size": 3}))  # 3 images per U-Net batch
    extract_images(sorted(images.iterdir()), tmp_path / "three", saver=batched, options=SaveOptions(format="npz"))
    for name in "abc":
        a, _ = load_features(tmp_path / "one" / f"{name}.npz")
        b, _ = load_features(tmp_path / "three" / f"{name}.npz")
        assert torch.allclose(a, b, atol=1e-5)


def test_formats_half_precision_and_settings_round_trip(saver, images, tmp_path):
    path = images / "a.png"
    ref = _dift_script_features(saver.extractor, path)[0]
    got = {}
    for fmt in ("pt", "safetensors", "npz"):
        out = tmp_path / f"a.{fmt}"
        res = extract_images([path], out, saver=saver, options=SaveOptions(save_dtype="float16"))
        assert res.written == [out]
        x, meta = load_features(out)
        assert x.dtype == torch.float16 and meta["save_dtype"] == "float16"
        assert torch.equal(x, ref.half())  # the float32 features rounded once to half precision
        assert (x.float() - ref).abs().max() <= ref.abs().max() * 2.0**-11
        got[fmt] = meta
    strip = lambda m: {k: v for k, v in m.items() if k != "source"}
    assert strip(got["pt"]) == strip(got["safetensors"]) == strip(got["npz"])


def _bilinear_reference(x: np.ndarray, H: int, W: int) -> np.ndarray:
    """Plain per-pixel bilinear resize, align_corners=False: source coordinate (i + 0.5) * h / H - 0.5, edges clamped."""
    C, h, w = x.shape
    out = np.zeros((C, H, W))
    for i in range(H):
        sy = max((i + 0.5) * h / H - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), h - 1)
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for j in range(W):
            sx = max((j + 0.5) * w / W - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), w - 1)
            x1, fx = min(x0 + 1, w - 1), sx - x0
            out[:, i, j] = ((1 - fy) * ((1 - fx) * x[:, y0, x0] + fx * x[:, y0, x1])
                            + fy * ((1 - fx) * x[:, y1, x0] + fx * x[:, y1, x1]))
    return out


def test_upsample_is_bilinear_without_corner_alignment():
    x = torch.randn(1, 3, 4, 5, generator=torch.Generator().manual_seed(0))
    up = upsample_features(x, (13, 9))  # size is (W, H)
    assert up.shape == (1, 3, 9, 13)
    np.testing.assert_allclose(up[0].numpy(), _bilinear_reference(x[0].double().numpy(), 9, 13), atol=1e-6)


def test_upsample_to_the_input_size(saver, images, tmp_path):
    path = images / "a.png"  # 70x50
    extract_images([path], tmp_path / "a.safetensors", saver=saver, options=SaveOptions(upsample=True))
    x, meta = load_features(tmp_path / "a.safetensors")
    ref = _dift_script_features(saver.extractor, path)
    assert x.shape == (16, 50, 70) and meta["upsample"] is True
    assert (meta["upsample_mode"], meta["align_corners"], meta["feature_size"]) == ("bilinear", False, [4, 4])
    np.testing.assert_allclose(x.numpy(), _bilinear_reference(ref[0].double().numpy(), 50, 70), atol=1e-5)


def test_resume_skips_complete_files_and_redoes_damaged_ones(saver, images, tmp_path, caplog):
    srcs = sorted(images.iterdir())
    out = tmp_path / "out"
    extract_images(srcs, out, saver=saver)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = extract_images(srcs, out, saver=saver)
    assert again.written == [] and len(again.skipped) == 3 and again.frames_extracted == 0
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    data = (out / "b.pt").read_bytes()
    (out / "b.pt").write_bytes(data[:100])  # a partial file
    (out / "c.pt").unlink()  # an unfinished one: its settings are there, the tensor is not
    res = extract_images(srcs, out, saver=saver)
    assert sorted(p.name for p in res.written) == ["b.pt", "c.pt"] and [p.name for p in res.skipped] == ["a.pt"]
    assert "redoing an incomplete feature file" in caplog.text
    for name in "bc":
        assert torch.equal(torch.load(out / f"{name}.pt", weights_only=True),
                           _dift_script_features(saver.extractor, images / f"{name}.png")[0])


def test_other_settings_or_a_foreign_file_need_overwrite(saver, images, tmp_path):
    src = [images / "a.png"]
    out = tmp_path / "out"
    extract_images(src, out, saver=saver)
    with pytest.raises(ConfigError, match=r"extractor was built with other settings than the config's: t=261 \(config: 51\)"):
        FeatureSaver(saver.config.override(extractor={"t": 51}), saver.extractor)
    other = FeatureSaver(saver.config.override(extractor={"t": 51}))
    with pytest.raises(OutputExistsError, match=r"a\.pt already exists and was made with other settings \(t: 261 -> 51\).*--overwrite"):
        extract_images(src, out, saver=other)
    res = extract_images(src, out, saver=other, options=SaveOptions(overwrite=True))
    assert res.written == [out / "a.pt"] and read_meta(out / "a.pt")["t"] == 51
    torch.save(torch.zeros(3), tmp_path / "mine.pt")  # e.g. the user's own DIFT output
    with pytest.raises(OutputExistsError, match="was not written by vidprop extract"):
        extract_images(src, tmp_path / "mine.pt", saver=saver)


def test_touching_the_image_means_recomputing(saver, images, tmp_path):
    out = tmp_path / "out"
    extract_images([images / "a.png"], out, saver=saver)
    Image.fromarray(np.zeros((50, 70, 3), np.uint8)).save(images / "a.png")
    with pytest.raises(OutputExistsError, match="source_"):
        extract_images([images / "a.png"], out, saver=saver)


def test_bad_images(saver, images, tmp_path):
    (images / "broken.png").write_text("not an image")
    with pytest.raises(InputError, match="broken.png: not a readable image"):
        extract_images([images / "a.png", images / "broken.png"], tmp_path / "out", saver=saver)
    assert not (tmp_path / "out").exists()  # checked before any work
    Image.fromarray(np.zeros((10, 40, 3), np.uint8)).save(images / "tiny.png")
    with pytest.raises(InputError, match=r"tiny.png: the image is 40x10, too small for features at stride 16"):
        extract_images([images / "tiny.png"], tmp_path / "out", saver=saver)
    keep = FeatureSaver(saver.config.override(frames={"mode": "original"}), saver.extractor)
    with pytest.raises(InputError, match=r"a.png: frame size 70x50 is not a multiple of 32"):
        extract_images([images / "a.png"], tmp_path / "out", saver=keep)
    res = extract_images([images / "b.png"], tmp_path / "b.pt", saver=keep)  # 64x64 needs no resize
    assert load_features(res.output)[1]["resize"] == "none"
    (images / "sub").mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(images / "sub" / "a.jpg")
    with pytest.raises(InputError, match="would both be saved as"):
        extract_images([images / "a.png", images / "sub" / "a.jpg"], tmp_path / "out", saver=saver)
    with pytest.raises(ConfigError, match="--out .*a.npz is a .npz file but the format asked for is pt"):
        extract_images([images / "a.png"], tmp_path / "a.npz", saver=saver, options=SaveOptions(format="pt"))


def test_disk_full_mid_run_removes_the_partial_file(saver, images, tmp_path, monkeypatch):
    calls = []
    real = store._WRITERS["pt"]

    def fill_up(fh, tensor, meta_json):
        calls.append(1)
        if len(calls) == 2:
            fh.write(b"\0" * 64)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fh, tensor, meta_json)

    monkeypatch.setitem(store._WRITERS, "pt", fill_up)
    out = tmp_path / "out"
    with pytest.raises(WriteError, match=r"b\.pt: could not write the features: no space left on device"):
        extract_images(sorted(images.iterdir()), out, saver=saver)
    left = sorted(p.name for p in out.iterdir())
    assert "b.pt" not in left and "b.json" not in left and not any(n.startswith(".") for n in left)
    assert left[:2] == ["a.json", "a.pt"]
    monkeypatch.setitem(store._WRITERS, "pt", real)
    res = extract_images(sorted(images.iterdir()), out, saver=saver)  # the same command resumes
    assert [p.name for p in res.skipped] == ["a.pt"] and "b.pt" in [p.name for p in res.written]


def test_no_model_is_loaded_when_everything_is_complete(saver, images, tmp_path):
    extract_images([images / "a.png"], tmp_path / "out", saver=saver)
    lazy = FeatureSaver(saver.config)  # no extractor
    res = extract_images([images / "a.png"], tmp_path / "out", saver=lazy)
    assert not lazy.loaded and len(res.skipped) == 1


def test_classify_inputs(images, frame_folder, tmp_path):
    kind, paths = classify_inputs([images])
    assert kind == "images" and [p.name for p in paths] == ["a.png", "b.png", "c.png"]
    assert classify_inputs([images / "b.png", images / "a.png"])[1] == [images / "b.png", images / "a.png"]
    assert classify_inputs([frame_folder], video=True) == ("videos", [frame_folder])
    (tmp_path / "clip.mp4").write_bytes(b"")
    assert classify_inputs([tmp_path / "clip.mp4"]) == ("videos", [tmp_path / "clip.mp4"])
    with pytest.raises(InputError, match="both still images"):
        classify_inputs([images / "a.png", tmp_path / "clip.mp4"])
    with pytest.raises(InputError, match="no such file"):
        classify_inputs([tmp_path / "nope.png"])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no frames in this folder"):
        classify_inputs([empty])
    assert os.path.isdir(images)
