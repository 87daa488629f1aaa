"""Build the seed notebook's model with Keras 3 and write a reference for tests/test_keras_seed.py.

Run in its own process (``KERAS_BACKEND=torch python keras_seed_reference.py OUT_DIR``): the
seed looks its taps up by Keras' automatic names ("activation_74"), which depend on global
name counters, so it needs a fresh Keras. The network code is the notebook's (cells 4 and 5),
with ``weights=None`` instead of "imagenet" (no internet) and random BatchNorm statistics,
so that a BatchNorm mapped to the wrong module, or a variable in the wrong slot, shows.

Writes OUT_DIR/seed.keras and OUT_DIR/reference.npz: RGB images in [0, 1] (NCHW) and the
Keras outputs (NCHW) for the seed's input, cv2-style BGR min-max normalised per image.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras.applications import InceptionResNetV2  # noqa: E402
from keras.layers import (BatchNormalization, Conv2D, Input, LeakyReLU, UpSampling2D, ZeroPadding2D,  # noqa: E402
                          concatenate)
from keras.models import Model  # noqa: E402


def upsampling_block(input_tensor, n_filters, name, concat_with):  # notebook cell 4
    x = UpSampling2D((2, 2), interpolation="bilinear", name=name)(input_tensor)
    x = Conv2D(filters=n_filters, kernel_size=(3, 3), padding="same", name=name + "_convA")(x)
    x = LeakyReLU(negative_slope=0.2)(x)
    x = concatenate([x, concat_with], axis=3)
    x = Conv2D(filters=n_filters, kernel_size=(3, 3), padding="same", name=name + "_convB")(x)
    x = LeakyReLU(negative_slope=0.2)(x)
    x = BatchNormalization()(x)
    x = Conv2D(filters=n_filters, kernel_size=(3, 3), padding="same", name=name + "_convC")(x)
    x = LeakyReLU(negative_slope=0.2)(x)
    x = BatchNormalization()(x)
    return x


def build(height, width, depth):  # notebook cell 5
    keras.backend.clear_session()  # the tap names below assume fresh name counters
    keras.utils.set_random_seed(0)  # the same random kernels every run
    i = Input(shape=(height, width, depth))
    iresnet = InceptionResNetV2(include_top=False, weights=None, input_tensor=i)
    conv1 = iresnet.get_layer("input_layer").output
    conv2 = ZeroPadding2D(((1, 0), (1, 0)))(iresnet.get_layer("activation").output)
    conv3 = ZeroPadding2D((1, 1))(iresnet.get_layer("activation_3").output)
    conv4 = ZeroPadding2D(((2, 1), (2, 1)))(iresnet.get_layer("activation_74").output)
    conv5 = ZeroPadding2D((1, 1))(iresnet.get_layer("activation_161").output)
    conv5 = LeakyReLU(negative_slope=0.2)(conv5)
    conv6 = upsampling_block(conv5, 256, "up1", concat_with=conv4)
    conv7 = upsampling_block(conv6, 128, "up2", concat_with=conv3)
    conv8 = upsampling_block(conv7, 64, "up3", concat_with=conv2)
    conv9 = upsampling_block(conv8, 32, "up4", concat_with=conv1)
    o = Conv2D(filters=1, kernel_size=3, strides=(1, 1), activation="sigmoid", padding="same", name="conv10")(conv9)
    return Model(inputs=i, outputs=o)


def randomise(model, rng):
    """Non-trivial BatchNorm statistics and affine terms, and non-zero conv biases."""
    for layer in model.layers:
        if isinstance(layer, BatchNormalization):
            c = layer.moving_mean.shape[0]
            layer.moving_mean.assign(rng.normal(0, 0.2, c).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
            if layer.gamma is not None:
                layer.gamma.assign(rng.uniform(0.7, 1.3, c).astype("float32"))
            layer.beta.assign(rng.normal(0, 0.2, c).astype("float32"))
        elif isinstance(layer, Conv2D) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.05, layer.bias.shape[0]).astype("float32"))


def seed_input(rgb_nchw):
    """What the notebook feeds: cv2.imread order (BGR), min-max per image (normalize_img)."""
    bgr = rgb_nchw[:, ::-1].transpose(0, 2, 3, 1)
    lo = bgr.min(axis=(1, 2, 3), keepdims=True)
    hi = bgr.max(axis=(1, 2, 3), keepdims=True)
    return ((bgr - lo) / (hi - lo)).astype("float32")


def main(out: Path) -> None:
    rng = np.random.default_rng(0)
    model = build(240, 320, 3)
    randomise(model, rng)
    model.save(out / "seed.keras")
    # The seed's fixed paddings are also the pad rule's at 480x640 (every tap loses the same
    # pixels at any multiple of 16), so a size-free twin of the same weights is a reference there.
    twin = build(None, None, 3)
    twin.set_weights(model.get_weights())
    ref = {}
    for key, (n, h, w) in {"240x320": (2, 240, 320), "480x640": (1, 480, 640)}.items():
        rgb = rng.uniform(0, 1, (n, 3, h, w)).astype("float32")
        net = model if h == 240 else twin
        ref[f"rgb_{key}"] = rgb
        ref[f"out_{key}"] = np.asarray(net.predict(seed_input(rgb), verbose=0)).transpose(0, 3, 1, 2)
    np.savez(out / "reference.npz", **ref)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
