"""Builders of bad (and awkward but valid) inputs for tests/test_faults.py, made in tmp dirs.

Written with plain PIL / numpy / struct calls, not with depthsmith's writers, so that a
reader bug cannot hide in a matching writer bug. Each image builder takes a path and returns it.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

SIZE = (40, 52)  # (height, width) of the good images: small, and not a multiple of 32


def smooth_rgb(h: int = SIZE[0], w: int = SIZE[1]) -> np.ndarray:
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
    a[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    a[..., 2] = 90
    return a


def good_png(path: Path, h: int = SIZE[0], w: int = SIZE[1]) -> Path:
    Image.fromarray(smooth_rgb(h, w)).save(path)
    return path


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(smooth_rgb()).save(buf, format=fmt)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and IHDR claiming ``width`` x ``height`` grey pixels, with a few
    bytes of image data: a few hundred bytes that would decode to gigabytes (a bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


# ----------------------------------------------------------------------------- bad images


def zero_byte(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncated_png(path: Path) -> Path:
    data = _encoded("PNG")
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_jpeg(path: Path) -> Path:
    data = _encoded("JPEG")
    path.write_bytes(data[: len(data) // 3])
    return path


def text_as_image(path: Path) -> Path:
    path.write_text("this is not an image\n" * 20)
    return path


def tiny_1x1(path: Path) -> Path:
    return good_png(path, 1, 1)


def line_1x2000(path: Path) -> Path:
    return good_png(path, 1, 2000)


def bomb_above_twice_limit(path: Path) -> Path:  # Pillow itself refuses these at open
    return png_header_only(path, 100_000, 100_000)


def bomb_above_limit(path: Path) -> Path:  # Pillow only warns here: depthsmith must refuse it
    return png_header_only(path, 10_000, 10_000)


def all_nan_npy(path: Path) -> Path:  # used to be turned black by nan_to_num and predicted silently
    np.save(path, np.full((*SIZE, 3), np.nan, np.float32))
    return path


def jpeg_lying_header(path: Path) -> Path:
    """A small valid JPEG whose frame header (SOF0) claims 60000 x 60000 pixels."""
    buf = io.BytesIO()
    Image.fromarray(smooth_rgb()).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    path.write_bytes(bytes(data))
    return path


BAD_IMAGES = {
    "all_nan_npy": (all_nan_npy, ".npy"),
    "jpeg_header_lies": (jpeg_lying_header, ".jpg"),
    "zero_byte": (zero_byte, ".png"),
    "truncated_png": (truncated_png, ".png"),
    "truncated_jpeg": (truncated_jpeg, ".jpg"),
    "text_as_image": (text_as_image, ".png"),
    "tiny_1x1": (tiny_1x1, ".png"),
    "line_1x2000": (line_1x2000, ".png"),
    "decompression_bomb_100k": (bomb_above_twice_limit, ".png"),
    "decompression_bomb_10k": (bomb_above_limit, ".png"),
}

# ----------------------------------------------------------------------------- awkward but valid images
# Each builder returns the (height, width) the depth output must have.


def cmyk_jpeg(path: Path) -> tuple[int, int]:
    Image.fromarray(smooth_rgb()).convert("CMYK").save(path, format="JPEG")
    return SIZE


def exif_rotated(path: Path) -> tuple[int, int]:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, "rotate 90" tag: the upright image is width x height
    Image.fromarray(smooth_rgb()).save(path, format="JPEG", exif=exif)
    return SIZE[::-1]


def palette_png(path: Path) -> tuple[int, int]:
    Image.fromarray(smooth_rgb()).convert("P", palette=Image.ADAPTIVE, colors=16).save(path)
    return SIZE


def png16_grey(path: Path) -> tuple[int, int]:
    Image.fromarray((smooth_rgb()[..., 0].astype(np.uint16) * 257)).save(path)
    return SIZE


def float_tiff(path: Path) -> tuple[int, int]:
    Image.fromarray(smooth_rgb()[..., 1].astype(np.float32) / 255.0, mode="F").save(path)
    return SIZE


def thin_2x40000(path: Path) -> tuple[int, int]:  # 324-byte class of file that used to run at 64 x 1,280,000
    Image.fromarray(np.full((2, 40000, 3), 128, np.uint8)).save(path)
    return (2, 40000)


VALID_IMAGES = {
    "cmyk_jpeg": (cmyk_jpeg, ".jpg"),
    "exif_rotated": (exif_rotated, ".jpg"),
    "palette_png": (palette_png, ".png"),
    "png16_grey": (png16_grey, ".png"),
    "float_tiff": (float_tiff, ".tif"),
    "thin_2x40000": (thin_2x40000, ".png"),
}


# ----------------------------------------------------------------------------- dataset pairs


def pair_files(root: Path, stem: str, depth_mm: np.ndarray | None = None, shape=SIZE) -> tuple[str, str]:
    """rgb/<stem>.png and depth/<stem>.png (16-bit millimetres, 2.5 m unless given) under ``root``."""
    (root / "rgb").mkdir(exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    good_png(root / "rgb" / f"{stem}.png", *shape)
    mm = np.full(shape, 2500, np.uint16) if depth_mm is None else depth_mm
    Image.fromarray(mm).save(root / "depth" / f"{stem}.png")
    return f"rgb/{stem}.png", f"depth/{stem}.png"


# ----------------------------------------------------------------------------- model folders
# Each corrupts a copy of a save_pretrained folder and returns (what to load, text the error must hold).


def _weights(folder: Path) -> dict:
    return load_file(str(folder / "model.safetensors"))


def _corrupt_body(f: Path) -> tuple[Path, str]:
    data = (f / "model.safetensors").read_bytes()
    (f / "model.safetensors").write_bytes(data[: len(data) // 2])
    return f, "model.safetensors: cannot read safetensors"


def _corrupt_header(f: Path) -> tuple[Path, str]:
    data = bytearray((f / "model.safetensors").read_bytes())
    data[8:40] = b"\xff" * 32  # inside the JSON header
    (f / "model.safetensors").write_bytes(bytes(data))
    return f, "model.safetensors: cannot read safetensors"


def _wrong_shape(f: Path) -> tuple[Path, str]:
    sd = _weights(f)
    key = next(k for k, v in sd.items() if v.ndim == 4)
    sd[key] = torch.zeros(*sd[key].shape[:-1], sd[key].shape[-1] + 1)
    save_file(sd, str(f / "model.safetensors"))
    return f, "model.safetensors: does not fit the model of"


def _config(text: str, expected: str):
    def build(f: Path) -> tuple[Path, str]:
        (f / "config.json").write_text(text)
        return f, expected
    return build


def _config_key(key: str, value, expected: str):
    def build(f: Path) -> tuple[Path, str]:
        cfg = json.loads((f / "config.json").read_text())
        cfg[key] = value
        (f / "config.json").write_text(json.dumps(cfg))
        return f, expected
    return build


def _checkpoint_as_config(f: Path) -> tuple[Path, str]:
    torch.save({"state_dict": _weights(f)}, f / "config.json")
    return f, "config.json: not a text file"


def _missing(name: str):
    def build(f: Path) -> tuple[Path, str]:
        (f / name).unlink()
        return f, f"{name} missing"
    return build


MODEL_CASES = {
    "safetensors_body_truncated": _corrupt_body,
    "safetensors_header_corrupt": _corrupt_header,
    "weight_of_wrong_shape": _wrong_shape,
    "config_json_list": _config("[1, 2, 3]", "config.json: holds a JSON list; expected an object"),
    "config_json_malformed": _config('{"encoder": "test_resnet",', "config.json: invalid JSON at line 1"),
    "config_json_is_a_checkpoint": _checkpoint_as_config,
    "config_unknown_key": _config_key("colour", "red", "config.json: unknown key(s) ['colour']"),
    "encoder_kwargs_checkpoint_path": _config_key("encoder_kwargs", {"checkpoint_path": "/etc/passwd"},
                                                  "config.json: encoder_kwargs key(s) ['checkpoint_path'] are not allowed"),
    "encoder_kwargs_weights": _config_key("encoder_kwargs", {"weights": "x.pth"}, "['weights'] are not allowed"),
    "decoder_kwargs_unknown": _config_key("decoder_kwargs", {"bogus": 1}, "config.json: does not describe a valid model"),
    "unknown_encoder": _config_key("encoder", "no_such_net", "config.json: does not describe a valid model"),
    "weights_missing": _missing("model.safetensors"),
    "config_missing": _missing("config.json"),
    "path_is_the_weight_file": lambda f: (f / "model.safetensors", "model.safetensors is a file; give the folder"),
}


def _nan_tensor(f: Path) -> tuple[Path, str]:
    sd = _weights(f)
    key = next(k for k, v in sd.items() if v.is_floating_point() and v.ndim == 4)
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    save_file(sd, str(f / "model.safetensors"))
    return f, f"{key} (1 of"


MODEL_CASES["weight_with_nan"] = _nan_tensor


# ----------------------------------------------------------------------------- transformers folders
# A tiny Depth Anything checkpoint as transformers writes it, then one fault each; the error must
# name the file (and the key) that is wrong.


def tiny_hf_folder(path: Path, kind: str = "metric") -> Path:
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=56, patch_size=14,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type=kind, max_depth=20)
    DepthAnythingForDepthEstimation(config).save_pretrained(path)
    return path


def _hf_config(change):
    def build(f: Path) -> None:
        cfg = json.loads((f / "config.json").read_text())
        change(cfg)
        (f / "config.json").write_text(json.dumps(cfg))
    return build


def _hf_index(weight_map):
    def build(f: Path) -> None:
        (f / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, **weight_map}))
    return build


def _hf_tensors(change):
    def build(f: Path) -> None:
        sd = _weights(f)
        change(sd)
        save_file(sd, str(f / "model.safetensors"))
    return build


def _truncate(name: str):
    def build(f: Path) -> None:
        data = (f / name).read_bytes()
        (f / name).write_bytes(data[: len(data) // 2])
    return build


def _nan_first(sd: dict) -> None:
    key = next(k for k in sorted(sd) if k.endswith("weight") and sd[k].ndim == 2)
    sd[key] = sd[key].clone()
    sd[key][0, 0] = float("nan")


def _first_2d(sd: dict) -> str:
    return next(k for k in sorted(sd) if k.endswith("weight") and sd[k].ndim == 2)


# name: (fault, file the error names, text it holds)
HF_CASES = {
    "index_without_weight_map": (_hf_index({}), "model.safetensors.index.json", "key 'weight_map' is missing"),
    "index_naming_a_missing_shard": (_hf_index({"weight_map": {"head.conv1.weight": "model-00002-of-00002.safetensors"}}),
                                     "model-00002-of-00002.safetensors", "model.safetensors.index.json names it"),
    "shard_truncated": (_truncate("model.safetensors"), "model.safetensors", "cannot read safetensors"),
    "metric_without_max_depth": (_hf_config(lambda c: c.pop("max_depth")), "config.json", "'max_depth' is missing"),
    "max_depth_negative": (_hf_config(lambda c: c.update(max_depth=-20)), "config.json", "'max_depth' is -20"),
    "max_depth_a_string": (_hf_config(lambda c: c.update(max_depth="far")), "config.json", "'max_depth' is 'far'"),
    "hidden_size_wrong_type": (_hf_config(lambda c: c["backbone_config"].update(hidden_size="big")), "config.json",
                               "big"),
    "config_a_list": (lambda f: (f / "config.json").write_text("[1, 2]"), "config.json", "holds a JSON list"),
    "config_truncated": (_truncate("config.json"), "config.json", "invalid JSON"),
    "tensor_missing": (_hf_tensors(lambda sd: sd.pop("head.conv3.weight")), "", "has no tensor for"),
    "tensor_wrong_shape": (_hf_tensors(lambda sd: sd.update({"head.conv3.bias": torch.zeros(3)})), "",
                           "has shape (3,) in the checkpoint"),
    "tensor_nan": (_hf_tensors(_nan_first), "", "NaN/inf"),
}
