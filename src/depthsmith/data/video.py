"""Synthetic video with exact geometry: a camera moving through one ray-cast room.

Each frame has RGB, exact depth (``raycast.render``), the clip's fixed intrinsics and the camera
pose as a 4x4 world-from-camera matrix ``[R | p]`` (``R`` = ``Camera.rotation``, whose columns are
the camera axes in world coordinates, ``p`` = its position; raycast.py's conventions: OpenCV
camera axes, metres). A camera point ``X_c`` is at ``R @ X_c + p`` in the world, so the relative
pose from frame i to frame j is ``inv(pose_j) @ pose_i``.

Camera paths (``PATHS``), each over the clip's frames with eased start and stop:

- ``walk``: forward along the view direction (up to 1.5 m, shortened so the camera keeps 0.4 m
  from every object and wall), with a small sway of the heading;
- ``pan``: standing still, the heading sweeps 0.9 rad (about 50 degrees) left to right;
- ``pass``: sideways 1.6 m past a column placed 0.9 m in front of the middle of the path
  (strong parallax and disocclusion behind the column);
- ``static``: a fixed camera (exact depth is identical in every frame: any change in a
  prediction is flicker).

Rendered frames of a still camera are bit-identical, unlike a camera's: ``exposure`` (standard
deviation of a per-frame gain) and ``noise`` (of per-pixel Gaussian noise, RGB in [0, 1]) add a
capture's variation, drawn from ``default_rng([seed, frame, 1])``; the depth stays exact.

The room is ``synthetic.sample_scene`` drawn from ``numpy.random.default_rng([seed, 7919])``, so a
clip is a pure function of its options; frame i is rendered on demand (nothing is held).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .base import DepthDataset
from .raycast import Box, Camera, Scene, render
from .synthetic import _surface, sample_scene
from ..errors import InputError

__all__ = ["SyntheticVideo", "PATHS", "write_clip"]

PATHS = ("walk", "pan", "pass", "static")
CLEARANCE = 0.4  # metres the camera keeps from walls and objects


def _ease(t: np.ndarray | float) -> np.ndarray | float:
    """0 -> 1 with zero velocity at both ends (smoothstep): no jerk at the clip's ends."""
    return t * t * (3 - 2 * t)


def _free(scene: Scene, p: np.ndarray, margin: float = CLEARANCE) -> bool:
    """Whether a camera at ``p`` keeps ``margin`` from the room's walls and from every object."""
    if (p < scene.room_lo + margin).any() or (p > scene.room_hi - margin).any():
        return False
    if any((p > b.lo - margin).all() and (p < b.hi + margin).all() for b in scene.boxes):
        return False
    return all(np.linalg.norm(p - s.center) > s.radius + margin for s in scene.spheres)


def _longest_free(scene: Scene, start: np.ndarray, direction: np.ndarray, length: float, steps: int = 60) -> float:
    """How far from ``start`` along ``direction`` (up to ``length``) the camera stays free."""
    for k in range(1, steps + 1):
        if not _free(scene, start + direction * (length * k / steps)):
            return length * (k - 1) / steps
    return length


class SyntheticVideo(DepthDataset):
    """``num_frames`` frames of one camera ``path`` (see ``PATHS``) through a procedural room.

    ``focal``: fx / width (fy = fx); the principal point is the image centre. Sample names are
    ``video/<path>-seed<seed>/<frame>``, so a holdout split by scene keeps a clip together.
    """

    def __init__(self, num_frames: int = 200, size: tuple[int, int] = (240, 320), seed: int = 0,
                 path: str = "walk", focal: float = 0.81, max_objects: int = 8, noise: float = 0.0,
                 exposure: float = 0.0, **kwargs) -> None:
        super().__init__(**kwargs)
        if noise < 0 or exposure < 0:
            raise InputError(f"noise and exposure are standard deviations (>= 0), got {noise} and {exposure}")
        self.noise, self.exposure = float(noise), float(exposure)
        if path not in PATHS:
            raise InputError(f"unknown camera path {path!r}; valid paths: {', '.join(PATHS)}")
        if int(num_frames) < 2:
            raise InputError(f"num_frames must be at least 2 (a video), got {num_frames}")
        self.num_frames, self.path, self.seed = int(num_frames), path, int(seed)
        self.size = (int(size[0]), int(size[1]))
        height, width = self.size
        fx = float(focal) * width
        self.fx, self.fy, self.cx, self.cy = fx, fx, (width - 1) / 2, (height - 1) / 2
        self.max_objects = int(max_objects)
        self.scene, self._start = self._build(self.max_objects)

    def _build(self, max_objects: int) -> tuple[Scene, dict]:
        rng = np.random.default_rng([self.seed, 7919])
        scene, cam = sample_scene(rng, max_objects)
        cam = dict(cam, pitch=float(np.clip(cam["pitch"], 0.0, 0.3)), roll=0.0)
        yaw = cam["yaw"]
        forward = np.array([np.sin(yaw), 0.0, np.cos(yaw)])
        right = np.array([np.cos(yaw), 0.0, -np.sin(yaw)])
        cam["position"] = p0 = np.asarray(cam["position"], dtype=float)
        if not _free(scene, p0):  # drop what stands on the start (sample_scene keeps 0.7 m from it mostly)
            scene.boxes = [b for b in scene.boxes if not ((p0 > b.lo - CLEARANCE) & (p0 < b.hi + CLEARANCE)).all()]
            scene.spheres = [s for s in scene.spheres if np.linalg.norm(p0 - s.center) > s.radius + CLEARANCE]
        if self.path == "walk":
            cam["travel"] = forward * _longest_free(scene, p0, forward, 1.5)
        elif self.path == "pass":
            # A column 0.3 m wide, floor to ceiling, 0.9 m ahead of the middle of the path.
            centre = p0 + forward * 0.9
            scene.materials.append(_surface(rng, "object"))
            scene.boxes.append(Box(np.array([centre[0] - 0.15, 0.0, centre[2] - 0.15]),
                                   np.array([centre[0] + 0.15, scene.room_hi[1], centre[2] + 0.15]),
                                   len(scene.materials) - 1))
            half = min(_longest_free(scene, p0, right, 0.8), _longest_free(scene, p0, -right, 0.8))
            cam["position"] = p0 - right * half
            cam["travel"] = right * 2 * half
        return scene, cam

    def camera(self, i: int) -> Camera:
        """The camera of frame ``i`` (intrinsics in pixels at this clip's size)."""
        t = i / (self.num_frames - 1)
        s = self._start
        position, yaw = np.array(s["position"], dtype=float), s["yaw"]
        if self.path in ("walk", "pass"):
            position = position + s["travel"] * _ease(t)
        if self.path == "walk":
            yaw += 0.08 * np.sin(2 * np.pi * t)
            position[1] += 0.02 * np.sin(4 * np.pi * t)  # a little head bob
        elif self.path == "pan":
            yaw += 0.45 * (2 * _ease(t) - 1)
        return Camera.look(position, yaw, s["pitch"], s["roll"], self.fx, self.fy, self.cx, self.cy)

    def pose(self, i: int) -> np.ndarray:
        """4x4 world-from-camera matrix of frame ``i`` (see the module docstring)."""
        cam = self.camera(i)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = cam.rotation, cam.position
        return pose

    def intrinsics(self) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) in pixels, the same for every frame."""
        return self.fx, self.fy, self.cx, self.cy

    def _count(self) -> int:
        return self.num_frames

    def _name(self, i: int) -> str:
        return f"video/{self.path}-seed{self.seed}/{i:06d}"

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        rgb, depth = render(self.scene, self.camera(i), *self.size)
        if self.noise or self.exposure:  # a camera's capture: per-frame gain and per-pixel sensor noise
            rng = np.random.default_rng([self.seed, i, 1])
            gain = 1.0 + self.exposure * rng.standard_normal()
            rgb = np.clip(rgb * gain + self.noise * rng.standard_normal(rgb.shape), 0.0, 1.0).astype(np.float32)
        return rgb, depth, self._name(i)


def write_clip(video: SyntheticVideo, out: str | Path, fps: float = 25.0) -> Path:
    """Write a clip for users: ``rgb.mp4``, ``depth/<frame>.npy`` (float32 metres), ``poses.npy``
    (N x 4 x 4 world-from-camera), ``intrinsics.json`` and ``dataset.yaml`` (the config that
    renders the same clip, for ``depthsmith eval --data``). One frame in memory at a time."""
    import yaml

    from ..io import VideoWriter

    out = Path(out)
    (out / "depth").mkdir(parents=True, exist_ok=True)
    poses = np.empty((len(video), 4, 4))
    with VideoWriter(out / "rgb.mp4", fps) as writer:
        for i in range(len(video)):
            rgb, depth, _ = video._load(i)
            writer.write((rgb * 255.0 + 0.5).astype(np.uint8))
            np.save(out / "depth" / f"{i:06d}.npy", depth.astype(np.float32))
            poses[i] = video.pose(i)
    np.save(out / "poses.npy", poses)
    fx, fy, cx, cy = video.intrinsics()
    (out / "intrinsics.json").write_text(json.dumps({"fx": fx, "fy": fy, "cx": cx, "cy": cy, "height": video.size[0],
                                                     "width": video.size[1], "fps": fps}, indent=2))
    config = {"type": "synthetic_video", "num_frames": video.num_frames, "size": list(video.size),
              "seed": video.seed, "path": video.path, "focal": fx / video.size[1],
              "max_objects": video.max_objects, "noise": video.noise, "exposure": video.exposure}
    (out / "dataset.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return out
