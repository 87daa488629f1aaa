"""Vectorised NumPy ray casting of simple indoor scenes: exact depth, shaded textured RGB.

Conventions. World: metres, y up, the floor is y = 0. Camera: OpenCV axes (x right,
y down, z forward); pixel (row v, column u) looks along ``R @ ((u - cx)/fx, (v - cy)/fy, 1)``
(pixel centres at integer coordinates). Because that direction has unit z in the camera
frame, the ray parameter t of a hit *is* its depth (camera z), so no normalisation is needed.

Speed comes from three things: float32 throughout, objects tested only inside the screen
rectangle their bounding box projects to, and in-place masked updates (``np.copyto``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Camera", "Material", "Box", "Sphere", "Scene", "render", "PATTERNS"]

F32 = np.float32
PATTERNS = ("plain", "checker", "stripes", "marble")


@dataclass
class Camera:
    """Pinhole camera: intrinsics in pixels, ``rotation`` maps camera axes to world (columns x, y, z)."""

    fx: float
    fy: float
    cx: float
    cy: float
    position: np.ndarray
    rotation: np.ndarray

    @staticmethod
    def look(position, yaw: float, pitch: float, roll: float, fx: float, fy: float, cx: float, cy: float) -> "Camera":
        """Yaw about world up (0 = looking along +z), pitch down positive, roll about the view axis (radians)."""
        forward = np.array([np.sin(yaw) * np.cos(pitch), -np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
        right = np.cross(forward, [0.0, 1.0, 0.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        c, s = np.cos(roll), np.sin(roll)
        right, down = c * right + s * down, -s * right + c * down
        rotation = np.stack([right, down, forward], axis=1)
        return Camera(fx, fy, cx, cy, np.asarray(position, dtype=float), rotation)

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) -> camera-frame points (N, 3)."""
        return (np.asarray(points, dtype=float) - self.position) @ self.rotation


@dataclass
class Material:
    """Two colours mixed by a pattern laid out in world metres (so it shrinks with distance)."""

    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float] | None = None  # None: same as color_a (a plain surface)
    pattern: str = "plain"
    scale: float = 0.5  # pattern period in metres
    angle: float = 0.0  # pattern rotation in the surface plane (radians)
    contrast: float = 1.0  # 0 = colour_a only


@dataclass
class Box:
    lo: np.ndarray
    hi: np.ndarray
    material: int
    casts_shadow: bool = True  # off for thin parts (table legs) whose shadows cost more than they show


@dataclass
class Sphere:
    center: np.ndarray
    radius: float
    material: int


@dataclass
class Scene:
    """An axis-aligned room (camera inside) with boxes and spheres and one point light.

    ``room_materials`` index ``materials`` for the faces -x, +x, floor, ceiling, -z, +z.
    """

    room_lo: np.ndarray
    room_hi: np.ndarray
    materials: list[Material]
    room_materials: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)
    boxes: list[Box] = field(default_factory=list)
    spheres: list[Sphere] = field(default_factory=list)
    light: np.ndarray = field(default_factory=lambda: np.array([0.0, 2.5, 0.0]))
    light_power: float = 6.0  # diffuse intensity at 1 m (the fall-off is inverse square)
    ambient: float = 0.3


def _screen_rect(cam: Camera, corners: np.ndarray, height: int, width: int) -> tuple[int, int, int, int] | None:
    """Pixel rectangle (v0, v1, u0, u1) covering the projection of ``corners``, or None if off-screen."""
    pc = cam.project(corners)
    if (pc[:, 2] <= 1e-3).any():  # crosses the camera plane: projection unbounded, test everything
        return 0, height, 0, width
    u = cam.fx * pc[:, 0] / pc[:, 2] + cam.cx
    v = cam.fy * pc[:, 1] / pc[:, 2] + cam.cy
    u0, u1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, width)
    v0, v1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, height)
    return (v0, v1, u0, u1) if u0 < u1 and v0 < v1 else None


def _box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def render(scene: Scene, cam: Camera, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the scene: returns (RGB float32 H x W x 3 in [0, 1], depth float32 H x W in metres)."""
    R = cam.rotation.astype(F32)
    o = [float(x) for x in cam.position]
    a = ((np.arange(width, dtype=F32) - F32(cam.cx)) / F32(cam.fx))[None, :]
    b = ((np.arange(height, dtype=F32) - F32(cam.cy)) / F32(cam.fy))[:, None]
    D = [R[k, 0] * a + R[k, 1] * b + R[k, 2] for k in range(3)]  # world ray directions, z_cam = 1

    # Room: the camera is inside, so along each axis the exit is the positive one of the two
    # plane crossings (a ray parallel to an axis gives +-inf there, never chosen by the min).
    with np.errstate(divide="ignore"):
        t_axis = [
            np.maximum((F32(scene.room_hi[k]) - F32(o[k])) / D[k], (F32(scene.room_lo[k]) - F32(o[k])) / D[k])
            for k in range(3)
        ]
    t = np.minimum(t_axis[0], t_axis[1])
    axis = (t_axis[1] < t_axis[0]).astype(np.int8)  # axis of the surface normal, kept for texturing
    np.copyto(axis, np.int8(2), where=t_axis[2] < t)
    np.minimum(t, t_axis[2], out=t)
    n = [np.negative(np.sign(D[k])) * (axis == k) for k in range(3)]  # room normals face inwards
    face = axis * np.int8(2) + ((n[0] + n[1] + n[2]) < 0)  # the +side face of the exit axis has normal -1
    mat = np.take(np.asarray(scene.room_materials, dtype=np.int16), face, mode="wrap")
    hits = (t, n, axis, mat)

    for box in scene.boxes:
        rect = _screen_rect(cam, _box_corners(box.lo, box.hi), height, width)
        if rect is not None:
            _hit_box(box, o, D, hits, np.s_[rect[0] : rect[1], rect[2] : rect[3]])
    for sph in scene.spheres:
        r = sph.radius
        corners = _box_corners(np.asarray(sph.center) - r, np.asarray(sph.center) + r)
        rect = _screen_rect(cam, corners, height, width)
        if rect is not None:
            _hit_sphere(sph, o, D, hits, np.s_[rect[0] : rect[1], rect[2] : rect[3]])

    p = [F32(o[k]) + t * D[k] for k in range(3)]
    direct, ambient = _shade(scene, p, n)
    _cast_shadows(scene, cam, p, direct)
    shade = direct + ambient
    shade *= F32(2.0) / (F32(1.0) + shade)  # soft highlight roll-off: 1 stays 1, bright spots stay below 2
    albedo = _texture(scene, p, axis, mat)
    rgb = np.empty((height, width, 3), dtype=F32)
    for c in range(3):
        np.multiply(albedo[c], shade, out=rgb[..., c])
    np.clip(rgb, 0.0, 1.0, out=rgb)
    np.sqrt(rgb, out=rgb)  # display gamma (2.0: close to sRGB and much cheaper than a power)
    return rgb, t


def _hit_box(box: Box, o, D, hits, sl) -> None:
    t, n, axis, mat = hits
    d = [D[k][sl] for k in range(3)]
    near, far, near_axis = _slab(box, [F32(x) for x in o], d, with_axis=True)
    ts = t[sl]
    hit = (near <= far) & (near > 1e-4) & (near < ts)  # NaN (ray parallel to a slab) compares False
    if not hit.any():
        return
    np.copyto(ts, near, where=hit)
    np.copyto(mat[sl], np.int16(box.material), where=hit)
    np.copyto(axis[sl], near_axis, where=hit)
    for k in range(3):
        # Outward normal of the entry face: against the ray along the entry axis.
        np.copyto(n[k][sl], np.where(near_axis == k, -np.sign(d[k]), F32(0)), where=hit)


def _hit_sphere(sph: Sphere, o, D, hits, sl) -> None:
    t, n, axis, mat = hits
    d = [D[k][sl] for k in range(3)]
    ts = t[sl]
    th, hit = _sphere_entry(sph, [F32(x) for x in o], d)
    hit &= (th > 1e-4) & (th < ts)
    if not hit.any():
        return
    np.copyto(ts, th, where=hit)
    np.copyto(mat[sl], np.int16(sph.material), where=hit)
    inv_r = F32(1.0 / sph.radius)
    ns = [(F32(o[k]) + th * d[k] - F32(sph.center[k])) * inv_r for k in range(3)]
    for k in range(3):
        np.copyto(n[k][sl], ns[k], where=hit)
    # Texture axis: the dominant normal component (a cheap tri-planar mapping).
    dominant = (np.abs(ns[1]) >= np.abs(ns[0])).astype(np.int8)
    np.copyto(dominant, np.int8(2), where=np.abs(ns[2]) > np.maximum(np.abs(ns[0]), np.abs(ns[1])))
    np.copyto(axis[sl], dominant, where=hit)


def _slab(box: Box, origin, d, with_axis: bool = False):
    """Entry and exit parameters of rays ``origin + s * d`` through an axis-aligned box (slab method),
    and with ``with_axis`` the axis of the entry face. ``origin`` holds scalars or arrays."""
    near = far = near_axis = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(3):
            t1 = (F32(box.lo[k]) - origin[k]) / d[k]
            t2 = (F32(box.hi[k]) - origin[k]) / d[k]
            lo_k, hi_k = np.minimum(t1, t2), np.maximum(t1, t2)
            if near is None:
                near, far = lo_k, hi_k
                near_axis = np.zeros(lo_k.shape, np.int8) if with_axis else None
            else:
                if with_axis:
                    np.copyto(near_axis, np.int8(k), where=lo_k > near)
                np.maximum(near, lo_k, out=near)
                np.minimum(far, hi_k, out=far)
    return near, far, near_axis


def _sphere_entry(sph: Sphere, origin, d) -> tuple[np.ndarray, np.ndarray]:
    """First parameter s where ``origin + s * d`` meets the sphere, and where it meets it at all."""
    oc = [origin[k] - F32(sph.center[k]) for k in range(3)]
    half_b = d[0] * oc[0] + d[1] * oc[1] + d[2] * oc[2]
    aa = d[0] * d[0] + d[1] * d[1] + d[2] * d[2]
    cc = oc[0] * oc[0] + oc[1] * oc[1] + oc[2] * oc[2] - F32(sph.radius**2)
    disc = half_b * half_b - aa * cc
    return (-half_b - np.sqrt(np.maximum(disc, 0))) / aa, disc > 0


def _shade(scene: Scene, p, n) -> tuple[np.ndarray, np.ndarray]:
    """Direct light (Lambertian, inverse-square fall-off) and an ambient term brighter facing up."""
    L = [F32(scene.light[k]) - p[k] for k in range(3)]
    dist2 = L[0] * L[0] + L[1] * L[1] + L[2] * L[2]
    cos = (n[0] * L[0] + n[1] * L[1] + n[2] * L[2]) / np.sqrt(dist2)
    np.maximum(cos, 0, out=cos)
    direct = cos * (F32(scene.light_power) / (dist2 + F32(1.0)))
    ambient = F32(scene.ambient) * (F32(0.8) + F32(0.2) * n[1])  # up-facing surfaces see more bounce light
    return direct, ambient


def _cast_shadows(scene: Scene, cam: Camera, p, direct: np.ndarray, darkness: float = 0.85) -> None:
    """Dim the direct light where an object blocks the segment from the surface to the light.

    Each caster is tested only inside the screen rectangle of its shadow volume: the object's
    corners and their projections from the light onto the floor enclose every shadowed point.
    """
    light = np.asarray(scene.light, dtype=float)
    height, width = direct.shape
    casters = [(b, _box_corners(b.lo, b.hi)) for b in scene.boxes if b.casts_shadow]
    casters += [(sph, _box_corners(np.asarray(sph.center) - sph.radius, np.asarray(sph.center) + sph.radius))
                for sph in scene.spheres]
    for obj, corners in casters:
        if corners[:, 1].max() >= light[1] - 0.05:
            continue  # at or above the light: its shadow is not bounded by the floor
        floor = light + (corners - light) * (light[1] / (light[1] - corners[:, 1]))[:, None]
        rect = _screen_rect(cam, np.vstack([corners, floor]), height, width)
        if rect is None:
            continue
        sl = np.s_[rect[0] : rect[1], rect[2] : rect[3]]
        q = [p[k][sl] for k in range(3)]
        d = [F32(light[k]) - q[k] for k in range(3)]  # segment to the light: parameter in (0, 1)
        if isinstance(obj, Box):
            near, far, _ = _slab(obj, q, d)
            blocked = (near <= far) & (near > F32(1e-3)) & (near < F32(1.0))
        else:
            s_hit, meets = _sphere_entry(obj, q, d)
            blocked = meets & (s_hit > F32(1e-3)) & (s_hit < F32(1.0))
        sub = direct[sl]
        np.copyto(sub, sub * F32(1.0 - darkness), where=blocked)


# Columns of the per-material table gathered per pixel by _texture.
_KC, _KS, _CHECKER, _STRIPES, _MARBLE, _MID, _AMP = 0, 1, 2, 3, 4, 5, 8


def _material_table(materials: list[Material]) -> np.ndarray:
    rows = []
    for m in materials:
        k = np.pi / m.scale
        a = np.asarray(m.color_a, dtype=float)
        b = a if m.color_b is None else np.asarray(m.color_b, dtype=float)
        weights = [m.pattern == name for name in PATTERNS[1:]]
        rows.append([k * np.cos(m.angle), k * np.sin(m.angle), *weights, *((a + b) / 2), *((b - a) / 2 * m.contrast)])
    return np.ascontiguousarray(np.asarray(rows, dtype=F32).T)


def _pixel_period(phase: np.ndarray) -> np.ndarray:
    """Period on screen, in pixels, of sin(phase): 2 pi over the larger of its steps along x and y.

    Measured by finite differences, so it sees foreshortening in the direction it happens (a
    receding stripe keeps its width across the view). Steps across an object edge are large
    and fade one pixel line to the mean colour, a small price for the same treatment everywhere.
    """
    step = np.abs(np.diff(phase, axis=1, append=phase[:, -1:]))
    np.maximum(step, np.abs(np.diff(phase, axis=0, append=phase[-1:])), out=step)
    return F32(2 * np.pi) / np.maximum(step, F32(1e-6))


def _fade(period: np.ndarray) -> np.ndarray:
    # Patterns finer than ~3 pixels would alias into noise: fade them to their mean colour.
    return np.clip((period - F32(3.0)) * F32(0.25), 0.0, 1.0)


def _texture(scene: Scene, p, axis, mat) -> list[np.ndarray]:
    """Per-pixel albedo from each material's pattern laid out in world metres on the surface."""
    table = _material_table(scene.materials)
    idx = mat.astype(np.intp)

    def column(j: int) -> np.ndarray:
        return np.take(table[j], idx, mode="wrap")  # indices are valid; "wrap" skips the bounds check

    # Surface coordinates: the two world axes across the normal axis.
    su = p[0].copy()
    np.copyto(su, p[2], where=axis == 0)
    sv = p[1].copy()
    np.copyto(sv, p[2], where=axis == 1)
    kc, ks = column(_KC), column(_KS)
    arg_u = su * kc - sv * ks
    arg_v = su * ks + sv * kc
    period_u, period_v = _pixel_period(arg_u), _pixel_period(arg_v)
    fade_u = _fade(period_u)
    s1, s2 = np.sin(arg_u), np.sin(arg_v)
    raw = s1 * fade_u * (column(_CHECKER) * s2 * _fade(period_v) + column(_STRIPES))
    if table[_MARBLE].any():
        marble = np.sin(arg_u + F32(2.0) * np.sin(arg_v * F32(0.37)) + F32(1.3) * s2)
        raw += column(_MARBLE) * marble * _fade(F32(0.5) * np.minimum(period_u, period_v))
    # Sharpen the sines towards hard edges where the pattern is large on screen.
    raw *= np.clip(np.minimum(period_u, period_v) * F32(0.15), 1.0, 6.0)
    np.clip(raw, -1.0, 1.0, out=raw)
    return [column(_MID + c) + column(_AMP + c) * raw for c in range(3)]
