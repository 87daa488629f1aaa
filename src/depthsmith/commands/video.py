"""``depthsmith data video``: a synthetic clip with exact geometry, written for users to try."""

from __future__ import annotations

from pathlib import Path

__all__ = ["data_video_cli"]


def data_video_cli(out: str | Path, path: str = "walk", frames: int = 200, height: int = 240, width: int = 320,
                   seed: int = 0, fps: float = 25.0) -> int:
    """Writes rgb.mp4 and the ground truth (depth/<frame>.npy, poses.npy, intrinsics.json, dataset.yaml)."""
    from ..data.video import SyntheticVideo, write_clip

    video = SyntheticVideo(num_frames=frames, size=(height, width), seed=seed, path=path)
    folder = write_clip(video, out, fps)
    print(f"{len(video)} frames of camera path '{path}' ({width} x {height}, seed {seed}) written to {folder}: "
          "rgb.mp4, depth/*.npy (metres), poses.npy (world-from-camera 4x4), intrinsics.json, dataset.yaml")
    return 0
