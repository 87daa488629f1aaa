"""Procedural indoor RGB-D scenes: the embedded default dataset (no download needed).

Each sample is a room (floor, ceiling, four walls) with furniture-like boxes, tables,
shelves, wall frames and spheres, lit by a ceiling point light and seen by a pinhole
camera with NYU-Kinect-like intrinsics (fx about 0.81 W). Depth is exact (ray casting),
roughly 0.5-10 m. The images carry the monocular cues real indoor photos do: perspective
(straight room edges converging), texture gradients (patterns laid out in world metres),
shading (Lambertian fall-off with distance), occlusion (nearest hit wins) and objects of
familiar sizes standing on the floor.

Sample i is a pure function of ``(seed, i)``: the scene is drawn from
``numpy.random.default_rng([seed, i])`` in resolution-free units, so the same scene can be
rendered at any size.
"""

from __future__ import annotations

import colorsys

import numpy as np

from .base import DepthDataset
from .raycast import Box, Camera, Material, Scene, Sphere, render
from ..errors import InputError

__all__ = ["SyntheticScenes", "sample_scene"]

MAX_ROOM_DIAGONAL = 9.8  # metres: keeps every depth below NYU's 10 m cap


def _color(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float], hue=None) -> tuple:
    h = rng.uniform(0, 1) if hue is None else (hue + rng.normal(0, 0.03)) % 1.0
    return colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))


def _surface(rng: np.random.Generator, kind: str) -> Material:
    """A plausible material for a floor, wall, ceiling or object."""
    if kind == "floor":
        style = rng.choice(["wood", "tiles", "carpet"], p=[0.45, 0.35, 0.2])
        if style == "wood":
            hue = rng.uniform(0.05, 0.11)
            return Material(_color(rng, (0.4, 0.7), (0.35, 0.7), hue), _color(rng, (0.4, 0.7), (0.2, 0.45), hue),
                            "stripes", rng.uniform(0.1, 0.22), rng.choice([0, np.pi / 2]), rng.uniform(0.5, 0.9))
        if style == "tiles":
            return Material(_color(rng, (0, 0.25), (0.55, 0.9)), _color(rng, (0, 0.3), (0.25, 0.6)),
                            "checker", rng.uniform(0.25, 0.6), rng.choice([0, np.pi / 4]), rng.uniform(0.5, 1.0))
        return Material(_color(rng, (0.1, 0.5), (0.3, 0.6)), _color(rng, (0.1, 0.5), (0.2, 0.5)),
                        "marble", rng.uniform(0.1, 0.3), rng.uniform(0, np.pi), 0.6)
    if kind == "wall":
        base = _color(rng, (0.05, 0.35), (0.6, 0.95))
        pattern = rng.choice(["plain", "stripes", "marble", "checker"], p=[0.25, 0.35, 0.25, 0.15])
        return Material(base, _color(rng, (0.1, 0.4), (0.4, 0.8)), str(pattern), rng.uniform(0.1, 0.5),
                        rng.choice([0, np.pi / 2]), rng.uniform(0.3, 0.7))
    if kind == "ceiling":
        return Material(_color(rng, (0, 0.1), (0.8, 1.0)), _color(rng, (0, 0.1), (0.55, 0.8)),
                        str(rng.choice(["plain", "checker"])), rng.uniform(0.5, 0.7), 0.0, 0.5)
    pattern = rng.choice(["plain", "checker", "stripes", "marble"], p=[0.2, 0.3, 0.25, 0.25])
    return Material(_color(rng, (0.2, 0.9), (0.3, 0.95)), _color(rng, (0.1, 0.9), (0.1, 0.7)), str(pattern),
                    rng.uniform(0.05, 0.3), rng.uniform(0, np.pi), rng.uniform(0.4, 1.0))


def _place(rng, room: np.ndarray, cam: np.ndarray, yaw: float, foot: np.ndarray, against_wall: bool):
    """Footprint centre (x, z) in view of the camera or against a wall, at least 0.7 m from the camera."""
    for _ in range(10):
        if against_wall:
            side = rng.integers(0, 3)  # left, right or far wall (never the one behind the camera)
            if side == 2:
                c = np.array([rng.uniform(0, room[0]), room[2] - foot[1] / 2])
            else:
                c = np.array([foot[0] / 2 if side == 0 else room[0] - foot[0] / 2, rng.uniform(0, room[2])])
        else:
            angle, dist = yaw + rng.uniform(-0.6, 0.6), rng.uniform(1.2, 5.5)
            c = cam[[0, 2]] + dist * np.array([np.sin(angle), np.cos(angle)])
        c = np.clip(c, foot / 2 + 0.01, room[[0, 2]] - foot / 2 - 0.01)
        gap = np.maximum(np.abs(c - cam[[0, 2]]) - foot / 2, 0)
        if np.linalg.norm(gap) > 0.7:  # keeps objects off the lens: depth stays above about 0.5 m
            return c
    return None


def _wall_frame(rng, room: np.ndarray, cam: np.ndarray, material: int) -> Box:
    """A picture, window or door: a 3 cm slab on the far wall or a side wall."""
    door = rng.uniform() < 0.3
    w, h = (rng.uniform(0.8, 1.0), rng.uniform(1.9, 2.1)) if door else (rng.uniform(0.3, 1.4), rng.uniform(0.3, 1.0))
    y0 = 0.0 if door else rng.uniform(0.9, max(room[1] - h - 0.2, 1.0))
    if rng.uniform() < 0.5:
        x0 = rng.uniform(0, room[0] - w)
        return Box(np.array([x0, y0, room[2] - 0.03]), np.array([x0 + w, y0 + h, room[2]]), material)
    z0 = max(rng.uniform(cam[2] + 0.5, room[2]) - w, 0.0)
    x0 = rng.choice([0.0, room[0] - 0.03])
    return Box(np.array([x0, y0, z0]), np.array([x0 + 0.03, y0 + h, z0 + w]), material)


def _furniture(kind: str, centre: np.ndarray, foot: np.ndarray, height: float, material: int) -> list[Box]:
    """A block or shelf (one box), or a table (top and four legs that cast no shadow)."""
    lo = np.array([centre[0] - foot[0] / 2, 0.0, centre[1] - foot[1] / 2])
    hi = np.array([centre[0] + foot[0] / 2, height, centre[1] + foot[1] / 2])
    if kind != "table":
        return [Box(lo, hi, material)]
    leg, top = 0.05, height - 0.04
    boxes = [Box(np.array([lo[0], top, lo[2]]), hi, material)]
    for x, z in [(lo[0], lo[2]), (hi[0] - leg, lo[2]), (lo[0], hi[2] - leg), (hi[0] - leg, hi[2] - leg)]:
        boxes.append(Box(np.array([x, 0.0, z]), np.array([x + leg, top, z + leg]), material, casts_shadow=False))
    return boxes


FOOTPRINTS = {  # kind: (width range, depth range, height range) in metres
    "table": ((0.6, 1.6), (0.5, 1.0), (0.45, 0.8)),
    "shelf": ((0.5, 1.5), (0.3, 0.5), (1.2, 2.2)),
    "block": ((0.4, 1.8), (0.4, 1.0), (0.3, 1.2)),
}


def sample_scene(rng: np.random.Generator, max_objects: int = 8) -> tuple[Scene, dict]:
    """Draw a room, its contents and a camera pose (resolution-free: intrinsics come later)."""
    room = np.array([rng.uniform(3.0, 6.5), rng.uniform(2.4, 3.2), rng.uniform(3.5, 8.5)])
    if np.linalg.norm(room) > MAX_ROOM_DIAGONAL:  # shrink the floor plan, keep the height
        room[[0, 2]] *= np.sqrt(max(MAX_ROOM_DIAGONAL**2 - room[1] ** 2, 1.0) / (room[0] ** 2 + room[2] ** 2))
    materials = [_surface(rng, "wall"), _surface(rng, "wall"), _surface(rng, "floor"), _surface(rng, "ceiling")]
    # Faces -x, +x, floor, ceiling, -z, +z: the side walls reuse one of the two wall materials.
    room_materials = (int(rng.integers(0, 2)), int(rng.integers(0, 2)), 2, 3, 0, 1)

    cam = np.array([rng.uniform(0.6, room[0] - 0.6), rng.uniform(1.0, 1.7), rng.uniform(0.5, 0.4 * room[2])])
    yaw = rng.uniform(-0.7, 0.7)
    camera = {
        "position": cam,
        "yaw": yaw,
        "pitch": rng.uniform(-0.05, 0.45),  # mostly looking down a little, as hand-held Kinect frames do
        "roll": rng.normal(0.0, 0.03),
        "principal": rng.normal(0.0, 0.01, size=2),  # offset as a fraction of the image size
    }

    boxes: list[Box] = []
    spheres: list[Sphere] = []
    tops: list[tuple[np.ndarray, np.ndarray]] = []  # surfaces below eye level that can carry a sphere

    def new_material() -> int:
        materials.append(_surface(rng, "object"))
        return len(materials) - 1

    for _ in range(int(rng.integers(2, max_objects + 1))):
        kind = str(rng.choice(["block", "table", "shelf", "frame", "sphere"], p=[0.3, 0.2, 0.15, 0.2, 0.15]))
        if kind == "frame":
            boxes.append(_wall_frame(rng, room, cam, new_material()))
        elif kind == "sphere":
            r = rng.uniform(0.1, 0.4)
            if tops and rng.uniform() < 0.5:
                tlo, thi = tops[int(rng.integers(len(tops)))]
                spheres.append(Sphere(np.array([rng.uniform(tlo[0], thi[0]), thi[1] + r, rng.uniform(tlo[2], thi[2])]),
                                      r, new_material()))
            elif (xz := _place(rng, room, cam, yaw, np.array([2 * r, 2 * r]), False)) is not None:
                spheres.append(Sphere(np.array([xz[0], r, xz[1]]), r, new_material()))
        else:
            (w0, w1), (d0, d1), (h0, h1) = FOOTPRINTS[kind]
            foot = np.array([rng.uniform(w0, w1), rng.uniform(d0, d1)])
            height = rng.uniform(h0, min(h1, room[1] - 0.1))
            if rng.uniform() < 0.5:
                foot = foot[::-1].copy()
            centre = _place(rng, room, cam, yaw, foot, against_wall=kind == "shelf" or rng.uniform() < 0.3)
            if centre is None:
                continue
            parts = _furniture(kind, centre, foot, height, new_material())
            boxes.extend(parts)
            lo, hi = parts[0].lo, parts[0].hi
            if hi[1] < cam[1] - 0.2:
                tops.append((lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)))

    light = np.array([rng.uniform(0.25, 0.75) * room[0], room[1] - 0.15, rng.uniform(0.35, 0.8) * room[2]])
    scene = Scene(np.zeros(3), room, materials, room_materials, boxes, spheres, light,
                  light_power=rng.uniform(3.0, 7.0), ambient=rng.uniform(0.2, 0.35))
    return scene, camera


class SyntheticScenes(DepthDataset):
    """``num_samples`` procedural rooms at ``size = (height, width)``; sample i depends only on (seed, i).

    ``focal`` is the range of fx / width drawn per sample (fy = fx, square pixels); NYU's Kinect
    has 518.9 / 640 = 0.81. Give a single number for a fixed focal length.
    """

    def __init__(
        self,
        num_samples: int = 1000,
        size: tuple[int, int] = (240, 320),
        seed: int = 0,
        focal: float | tuple[float, float] = (0.76, 0.86),
        max_objects: int = 8,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if num_samples < 1:
            raise InputError(f"num_samples must be positive, got {num_samples}")
        self.num_samples = int(num_samples)
        self.size = (int(size[0]), int(size[1]))
        self.seed = int(seed)
        self.focal = (float(focal), float(focal)) if np.isscalar(focal) else (float(focal[0]), float(focal[1]))
        self.max_objects = int(max_objects)

    def _count(self) -> int:
        return self.num_samples

    def _name(self, i: int) -> str:
        return f"synthetic/seed{self.seed}/{i:06d}"

    def scene(self, i: int) -> tuple[Scene, Camera]:
        """The scene and camera of sample i (intrinsics in pixels at this dataset's size)."""
        rng = np.random.default_rng([self.seed, i])
        scene, cam = sample_scene(rng, self.max_objects)
        height, width = self.size
        fx = rng.uniform(*self.focal) * width
        cx = (width - 1) / 2 + cam["principal"][0] * width
        cy = (height - 1) / 2 + cam["principal"][1] * height
        return scene, Camera.look(cam["position"], cam["yaw"], cam["pitch"], cam["roll"], fx, fx, cx, cy)

    def intrinsics(self, i: int) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy) of sample i in pixels, e.g. to back-project its depth."""
        cam = self.scene(i)[1]
        return cam.fx, cam.fy, cam.cx, cam.cy

    def _load(self, i: int) -> tuple[np.ndarray, np.ndarray, str]:
        scene, cam = self.scene(i)
        rgb, depth = render(scene, cam, *self.size)
        return rgb, depth, self._name(i)
