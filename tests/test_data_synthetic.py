"""Procedural scenes: depth against independent analytic computations, determinism, cues, speed sanity."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from depthsmith.data import SyntheticScenes, build_dataset
from depthsmith.data.raycast import Box, Camera, Material, Scene, Sphere, render

H, W = 60, 80
FX = FY = 0.81 * W
CX, CY = (W - 1) / 2, (H - 1) / 2
FAR = 1000.0


def open_scene(far_z: float = FAR, boxes=(), spheres=()) -> Scene:
    """A floor at y = 0 and otherwise walls so far away that they never matter."""
    return Scene(np.array([-FAR, 0.0, -FAR]), np.array([FAR, FAR, far_z]),
                 [Material((0.5, 0.5, 0.5), (0.2, 0.3, 0.4), "checker", 0.5)],
                 boxes=list(boxes), spheres=list(spheres))


def camera(height: float, pitch: float = 0.0, yaw: float = 0.0) -> Camera:
    return Camera.look([0.0, height, 0.0], yaw, pitch, 0.0, FX, FY, CX, CY)


def test_fronto_parallel_wall_gives_constant_depth():
    z = 3.7
    # Camera 50 m up so the floor is out of view: the far wall z = 3.7 fills the image.
    _, depth = render(open_scene(far_z=z), camera(50.0), H, W)
    assert np.allclose(depth, z, rtol=1e-6)


@pytest.mark.parametrize("pitch", [0.0, 0.3])
def test_floor_depth_is_h_fy_over_v_minus_cy(pitch):
    h = 1.4
    _, depth = render(open_scene(), camera(h, pitch), H, W)
    v = np.arange(H, dtype=np.float64)[:, None]
    # Independent: the ray (x, (v - cy)/fy, 1) in a camera pitched down by `pitch` descends
    # cos(pitch) * (v - cy)/fy + sin(pitch) per unit of depth, so the floor h below is met at:
    descent = np.cos(pitch) * (v - CY) / FY + np.sin(pitch)
    with np.errstate(divide="ignore"):
        expected = np.broadcast_to(h / descent, (H, W))
    rows = (descent[:, 0] > 2 * h / FAR)  # rows that see the floor before the far walls
    assert rows.sum() > H // 3
    assert np.allclose(depth[rows], expected[rows], rtol=1e-5)
    if pitch == 0.0:  # the form: h * fy / (v - cy)
        assert np.allclose(depth[rows], (h * FY / (v - CY) * np.ones((1, W)))[rows], rtol=1e-5)


def test_box_and_sphere_occlude_with_their_own_depth():
    box = Box(np.array([-0.5, 0.0, 2.0]), np.array([0.5, 3.0, 3.0]), 0)  # front face at z = 2
    sphere = Sphere(np.array([0.0, 1.0, 1.5]), 0.2, 0)  # in front of the box, on the optical axis
    _, depth = render(open_scene(boxes=[box], spheres=[sphere]), camera(1.0), H, W)
    # Independent ray-sphere intersection in float64 for every pixel.
    a = (np.arange(W) - CX) / FX
    b = (np.arange(H) - CY) / FY
    dx, dy = np.meshgrid(-a, -b)  # camera right = world -x, camera down = world -y (yaw 0)
    d = np.stack([dx, dy, np.ones_like(dx)], -1)
    oc = np.array([0.0, 1.0, 0.0]) - sphere.center
    qa, qb, qc = (d * d).sum(-1), 2 * (d @ oc), oc @ oc - sphere.radius**2
    disc = qb * qb - 4 * qa * qc
    on_sphere = disc > 0
    t_sphere = (-qb - np.sqrt(np.where(on_sphere, disc, 0))) / (2 * qa)
    assert on_sphere.sum() > 10
    assert np.allclose(depth[on_sphere], t_sphere[on_sphere], rtol=1e-5)
    # Pixels whose ray meets the box's front face (|x| <= 0.5, 0 <= y <= 3 at z = 2) and not the sphere.
    x_at, y_at = dx * 2.0, 1.0 + dy * 2.0
    on_face = (np.abs(x_at) < 0.49) & (y_at > 0.01) & (y_at < 2.99) & ~on_sphere
    assert on_face.sum() > 50
    assert np.allclose(depth[on_face], 2.0, rtol=1e-6)


def test_sample_is_a_pure_function_of_seed_and_index():
    a, b = SyntheticScenes(10, size=(H, W), seed=3), SyntheticScenes(1000, size=(H, W), seed=3)
    for i in (0, 7):
        assert torch.equal(a[i]["image"], b[i]["image"]) and torch.equal(a[i]["depth"], b[i]["depth"])
    assert not torch.equal(a[0]["depth"], SyntheticScenes(10, size=(H, W), seed=4)[0]["depth"])
    assert not torch.equal(a[0]["depth"], a[1]["depth"])
    clone = pickle.loads(pickle.dumps(a))
    assert torch.equal(clone[5]["image"], a[5]["image"])
    assert a[2]["name"] == "synthetic/seed3/000002"


def test_any_resolution_renders_the_same_scene():
    small = SyntheticScenes(4, size=(48, 64), seed=1)
    large = SyntheticScenes(4, size=(96, 128), seed=1)
    assert large.intrinsics(2)[0] == pytest.approx(2 * small.intrinsics(2)[0])
    for i in range(4):
        d_small = small[i]["depth"]
        d_large = torch.nn.functional.avg_pool2d(large[i]["depth"][None], 2)[0]
        # Same geometry: the 2x2 means of the large map match the small map except on edges.
        rel = ((d_large - d_small).abs() / d_small)
        assert rel.median() < 0.01
    odd = SyntheticScenes(2, size=(37, 53))[1]
    assert odd["image"].shape == (3, 37, 53) and odd["mask"].all()


def test_depth_range_and_intrinsics_like_nyu():
    ds = SyntheticScenes(40, size=(48, 64), seed=0)
    depths = torch.stack([ds[i]["depth"] for i in range(len(ds))])
    assert depths.min() > 0.3 and depths.max() < 10.0
    assert torch.stack([ds[i]["mask"] for i in range(len(ds))]).all()
    assert np.median(depths.numpy()) > 1.5
    fx = np.array([ds.intrinsics(i)[0] for i in range(len(ds))]) / 64
    assert fx.min() >= 0.76 and fx.max() <= 0.86 and abs(fx.mean() - 0.81) < 0.02
    fixed = SyntheticScenes(2, size=(48, 64), focal=0.81)
    assert fixed.intrinsics(1)[0] == pytest.approx(0.81 * 64)


def test_random_scenes_are_never_flat():
    ds = SyntheticScenes(16, size=(60, 80), seed=0)
    for i in range(len(ds)):
        s = ds[i]
        assert s["image"].mean(0).std() > 0.03
        assert s["depth"].std() > 0.05


def test_texture_gets_denser_with_distance():
    h, w = 120, 160
    scene = open_scene()
    scene.materials = [Material((0.9, 0.9, 0.9), (0.1, 0.1, 0.1), "stripes", 0.4, angle=0.0)]  # stripes along x
    cam = Camera.look([0.0, 1.4, 0.0], 0.0, 0.3, 0.0, 0.81 * w, 0.81 * w, (w - 1) / 2, (h - 1) / 2)
    rgb, depth = render(scene, cam, h, w)
    grey = rgb.mean(-1)
    crossings = (np.diff(np.sign(grey - grey.mean(1, keepdims=True)), axis=1) != 0).sum(1)
    row_depth = depth[:, w // 2]
    near = crossings[(row_depth > 1.5) & (row_depth < 2.5)].mean()
    far = crossings[(row_depth > 4.0) & (row_depth < 6.0)].mean()
    # A stripe of 0.4 m spans 0.81 w * 0.4 / z pixels: about 2.5x more stripes per row at 5 m than at 2 m.
    assert far > 1.8 * near > 0


def test_lambertian_shading_falls_off_from_the_light():
    scene = open_scene()
    scene.materials = [Material((0.5, 0.5, 0.5))]  # plain: only shading varies
    scene.light = np.array([0.0, 3.0, 4.0])
    rgb, depth = render(scene, camera(1.5, pitch=0.5), H, W)
    grey = rgb.mean(-1)
    column = grey[:, W // 2]  # floor points along z below the optical axis
    z = depth[:, W // 2] * np.cos(0.5)  # roughly; only the ordering matters
    order = np.argsort(np.abs(z - 4.0))  # distance from the light's foot
    nearest, farthest = column[order[:5]].mean(), column[order[-5:]].mean()
    assert nearest > farthest + 0.05
    # Occlusion casts shadows: a box between the light and the floor darkens it.
    scene.boxes = [Box(np.array([-0.5, 1.0, 3.5]), np.array([0.5, 1.2, 4.5]), 0)]
    shadowed, _ = render(scene, camera(1.5, pitch=0.5), H, W)
    assert (shadowed.mean(-1) < grey - 0.05).sum() > 20


def test_usable_from_config():
    ds = build_dataset({"type": "synthetic", "num_samples": 5, "size": [30, 40], "seed": 2})
    assert len(ds) == 5 and ds[4]["image"].shape == (3, 30, 40)
