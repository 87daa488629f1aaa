"""The LightningModule: the maths of a training step, nothing about devices or files.

It owns the model, the loss (compared in [0, 1] target space), the optimiser groups and
schedule, the in-training metrics, the NaN guard and the optional encoder freezing. The
Trainer owns everything else (devices, precision, DDP, checkpoints, loggers, progress bar).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from ..data import depth_to_target
from ..losses import INVARIANT_TERMS, build_loss
from ..models import DepthModel, create_model
from ..models.init_from import SAME_AS_INIT, init_architecture
from .working_size import model_section
from .batch_metrics import align_scale_shift, batch_metrics
from .optim import build_optimizer, build_scheduler
from .schema import TrainConfig
from ..errors import InputError

__all__ = ["DepthTrainModule", "NonFiniteLossError", "CollapsedOutputError", "build_model", "COLLAPSE_STEPS"]

# Training stops when the model's output has been one value at every pixel of every batch for this
# many steps in a row: a ReLU head (disparity, metric_relu) that outputs 0 everywhere passes no
# gradient, and the loss then sits flat while the run looks healthy (seen fine-tuning a random
# DA-V2-shaped model at lr 1e-4, and a tiny ViT + DPT at 1e-2). A live model is never exactly
# constant over a whole batch; a few batches in a row can be, and Adam's momentum sometimes brings
# the head back within a few steps (the same tiny ViT at lr 0.1 on 16 images), hence a run of steps.
COLLAPSE_STEPS = 20


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the message names the step."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


class CollapsedOutputError(NonFiniteLossError):
    """The output has been one constant value for ``COLLAPSE_STEPS`` training steps in a row (or the
    run ended that way); the message names the step it started and the value."""


def build_model(model_cfg: Mapping[str, Any], encoder_weights: Any = "config") -> DepthModel:
    """``create_model`` from the ``model:`` section (name, decoder, encoder_weights + overrides).

    ``init_from`` (a depthsmith or transformers checkpoint, folder or Hub id) and ``init_parts``
    (default [encoder]) start from published weights; skipped with ``encoder_weights=None``, which
    means rebuilding a trained model for its checkpoint (no download of any kind).
    """
    cfg = copy.deepcopy(dict(model_cfg))
    init_from, init_parts = cfg.pop("init_from", None), cfg.pop("init_parts", ["encoder"])
    name = cfg.pop("name")
    decoder = cfg.pop("decoder", None)
    weights = cfg.pop("encoder_weights", None)
    if encoder_weights != "config":
        weights = encoder_weights
    try:
        donor = None
        if name == SAME_AS_INIT:  # the architecture of init_from itself (models/init_from.py)
            chosen = {**cfg, "decoder": decoder}  # the recipe's own choices win over the source's
            arch, donor = init_architecture(init_from, {k: v for k, v in chosen.items() if v is not None})
            model = DepthModel(**arch, encoder_weights=None if weights == "imagenet" else weights)
        else:
            model = create_model(name, decoder=decoder, encoder_weights=weights, **cfg)
        if init_from and encoder_weights is not None:
            from ..models.init_from import init_weights_from

            init_weights_from(model, init_from, init_parts, donor=donor)
        return model
    except (OSError, RuntimeError) as err:
        if weights == "imagenet":
            raise RuntimeError(
                f"could not load ImageNet weights for {name!r} ({err}). Without internet access, set "
                "model.encoder_weights=null (random init) or to a local .safetensors/.pth file."
            ) from err
        raise


def check_loss_fits_kind(kind: Any, terms: set[str]) -> None:
    """A metric output on scale-and-shift-invariant terms would learn no metres; a kind whose scale
    and shift are free (``invariant_loss``) needs those terms only."""
    invariant = terms & set(INVARIANT_TERMS)
    if invariant and not kind.unitless:
        raise InputError(f"loss terms {sorted(invariant)} ignore scale and shift, so model.output={kind.name!r} "
                         "would learn no metres; use them with model.output=relative or disparity")
    if kind.invariant_loss and not terms <= set(INVARIANT_TERMS):
        raise InputError(f"model.output={kind.name!r} is affine-invariant: train it with loss: midas (terms "
                         f"{list(INVARIANT_TERMS)}), not {sorted(terms - set(INVARIANT_TERMS))}")


class DepthTrainModule(pl.LightningModule):
    """Trains a DepthModel from a resolved config (``depthsmith.train.config.resolve_config``)."""

    def __init__(self, config: TrainConfig) -> None:
        super().__init__()
        # The whole resolved config goes into every checkpoint (and hparams.yaml), as a plain dict.
        self.save_hyperparameters({"config": config.to_dict()})
        self.config = config
        self.model = build_model(model_section(config))  # model_section: working_size from the data
        self.loss = build_loss(config.loss)
        # seed_minmax: the seed code's target (min-max over every pixel, loss on every pixel).
        self.seed_target = config.target == "seed_minmax"
        kind = self.model.output_kind
        if kind.target is None:
            raise InputError(f"model.output={kind.name!r} cannot be trained here: {kind.untrainable}.")
        self.target_mode = "minmax_all" if self.seed_target else kind.target
        check_loss_fits_kind(kind, set(self.loss.weights))
        if self.seed_target and kind.target != "minmax":
            raise InputError(f"target: seed_minmax trains relative depth; set model.output=relative "
                             f"(got {self.model.output!r})")
        if config.bn_momentum is not None:
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.momentum = float(config.bn_momentum)
        self.freeze_encoder_epochs = int(config.freeze_encoder_epochs or 0)
        self.train_metrics = bool(config.logging.train_metrics)
        self._last_batch_end: float | None = None
        self._images_per_s: float | None = None
        self._constant_since: tuple[int, int, float] | None = None  # (step, epoch, value) where it began
        self._constant_steps = 0

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)

    # -- the step ---------------------------------------------------------------------------
    def _loss(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        pred = self.model.forward_normalized(batch["image"])
        # The loss runs in float32 even under bf16 autocast: SSIM's variances and the small
        # differences of the edge term lose too much in bf16.
        with torch.autocast(device_type=self.device.type, enabled=False):
            pred = pred.float()
            mask = torch.ones_like(batch["mask"]) if self.seed_target else batch["mask"]
            target = depth_to_target(batch["depth"].float(), mask, self.target_mode,
                                     max_depth=self.model.max_depth, min_depth=self.model.min_depth)
            loss, terms = self.loss(pred, target, mask)
        return pred, loss, terms

    @torch.autocast("cpu", enabled=False)  # metrics in float32 whatever the training precision
    @torch.autocast("cuda", enabled=False)
    def _depth_metrics(self, pred: Tensor, batch: Mapping[str, Tensor], with_ssim: bool = True) -> dict[str, Tensor]:
        gt, mask = batch["depth"].float(), batch["mask"]
        pred = pred.float()
        kind = self.model.output_kind
        if kind.unitless:  # scored after a least-squares scale and shift per image, in the kind's affine space
            valid = mask & (gt > self.model.min_depth) & (gt <= self.model.max_depth)
            space = kind.in_affine_space  # 1 / x for disparity (what the ReLU output is), identity for relative
            fitted = align_scale_shift(space(self.model.to_depth(pred.detach())), space(gt.clamp_min(self.model.min_depth)), valid)
            depth = space(fitted.clamp_min(1e-6))  # batch_metrics clamps to [min_depth, max_depth] anyway
        else:
            depth = self.model.to_depth(pred.detach())
        return batch_metrics(depth, gt, mask, self.model.min_depth, self.model.max_depth, with_ssim=with_ssim)

    def _check_finite(self, loss: Tensor, terms: Mapping[str, Tensor], batch_idx: int) -> None:
        bad = not bool(torch.isfinite(loss.detach()))
        # Every DDP rank must stop together, or the others would wait forever in all-reduce.
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            values = ", ".join(f"{k}={float(v):.4g}" for k, v in terms.items())
            raise NonFiniteLossError(
                f"the loss is not finite ({float(loss.detach()) if bad else 'on another rank'}) at global step "
                f"{self.global_step} (epoch {self.current_epoch}, batch {batch_idx}); loss terms: {values or '-'}. "
                "Try a lower optim.lr, trainer.gradient_clip_val=1.0, trainer.precision=fp32, "
                "or check the data with `depthsmith data check`.",
                step=self.global_step,
            )

    def _check_collapse(self, pred: Tensor) -> None:
        p = pred.detach()
        constant = bool(p.amax() == p.amin())
        # Every DDP rank counts the same steps (a rank whose batch still varies keeps the run going).
        if not self.trainer.strategy.reduce_boolean_decision(constant, all=True):
            self._constant_steps, self._constant_since = 0, None
            return
        if self._constant_since is None:
            self._constant_since = (self.global_step, self.current_epoch, float(p.flatten()[0]))
        self._constant_steps += 1
        if self._constant_steps >= COLLAPSE_STEPS:
            self._raise_collapsed()

    def _raise_collapsed(self) -> None:
        step, epoch, value = self._constant_since or (self.global_step, self.current_epoch, float("nan"))
        kind = self.model.output_kind
        why = (f"a {kind.name} head ends in a ReLU, and a ReLU that outputs 0 everywhere passes no gradient: only "
               "the optimiser's momentum still moves the weights" if value == 0.0
               else "a saturated output passes (almost) no gradient")
        raise CollapsedOutputError(
            f"the model's output has been {value:.4g} at every pixel of every training batch for "
            f"{self._constant_steps} steps, since global step {step} (epoch {epoch}): it has collapsed "
            f"({why}); the loss stays flat from here. Try a lower optim.lr (now {self.config.optim.lr:g}), a warm-up "
            "(schedule.name=onecycle), or start from pretrained weights (model.init_from / model.encoder_weights). "
            "Checkpoints from before that step are the last that can still learn.",
            step=self.global_step,
        )

    def on_train_end(self) -> None:
        # A run that ends while collapsed is not a trained model, even if it ended before COLLAPSE_STEPS.
        if self._constant_steps >= 3:
            self._raise_collapsed()

    def training_step(self, batch: Mapping[str, Tensor] | None, batch_idx: int) -> Tensor | None:
        if batch is None:  # every sample of the batch was unreadable (on_error=skip)
            return None
        pred, loss, terms = self._loss(batch)
        self._check_finite(loss, terms, batch_idx)
        self._check_collapse(pred)
        bs = batch["image"].shape[0]
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        self.log("train/loss_step", loss.detach(), on_step=True, on_epoch=False, batch_size=bs)
        self.log("loss", loss.detach(), on_step=True, on_epoch=False, prog_bar=True, logger=False, batch_size=bs)
        for name, value in terms.items():
            self.log(f"train/loss_{name}", value, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        if self.train_metrics:
            metrics = self._depth_metrics(pred, batch)
            for name in ("rmse", "ssim"):
                if name in metrics:
                    self.log(f"train/{name}", metrics[name], on_step=False, on_epoch=True, batch_size=bs,
                             sync_dist=True)
        return loss

    def validation_step(self, batch: Mapping[str, Tensor] | None, batch_idx: int, dataloader_idx: int = 0) -> None:
        if batch is None:
            return
        # Loader 0 is the validation set; with logging.train_eval a second loader runs the same
        # evaluation pass (eval mode, no augmentation) over the training set, as the report does.
        prefix = self.trainer.datamodule.val_prefixes[dataloader_idx] if self.trainer.datamodule else "val"
        pred, loss, _ = self._loss(batch)
        bs = batch["image"].shape[0]
        self.log(f"{prefix}/loss", loss, on_epoch=True, batch_size=bs, sync_dist=True, add_dataloader_idx=False)
        for name, value in self._depth_metrics(pred, batch).items():
            self.log(f"{prefix}/{name}", value, on_epoch=True, batch_size=bs, sync_dist=True,
                     prog_bar=name == "rmse" and prefix == "val", add_dataloader_idx=False)

    # -- throughput for the progress bar --------------------------------------------------
    # Not Lightning's ThroughputMonitor: it logs to the loggers (metrics.csv, TensorBoard), not to
    # the progress bar, and warns on every run of a module without a flops_per_batch.
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self._last_batch_end is not None and batch is not None:
            rate = batch["image"].shape[0] * self.trainer.world_size / max(now - self._last_batch_end, 1e-9)
            # Exponential moving average: a steady number in the bar, not the last batch's jitter.
            self._images_per_s = rate if self._images_per_s is None else 0.9 * self._images_per_s + 0.1 * rate
            self.log("img/s", self._images_per_s, prog_bar=True, logger=False, on_step=True, on_epoch=False)
        self._last_batch_end = now

    # -- encoder freezing -------------------------------------------------------------------
    # Not Lightning's BaseFinetuning: it unfreezes by adding a new optimizer param group (which the
    # OneCycle schedule, built on the groups at the start, never schedules) and its freeze leaves
    # BatchNorm training or on batch statistics; here the encoder stays in the optimizer from step 0
    # (frozen = no gradient, so AdamW skips it) and frozen BatchNorm keeps its running statistics.
    def on_train_epoch_start(self) -> None:
        self._last_batch_end = None
        if self.freeze_encoder_epochs <= 0:
            return
        frozen = self.current_epoch < self.freeze_encoder_epochs
        # Frozen means no gradient (no encoder backward at all) and BatchNorm statistics fixed.
        self.model.encoder.requires_grad_(not frozen)
        self.model.encoder.train(not frozen)

    # -- optimiser -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.model, self.config.optim)
        scheduler = build_scheduler(
            optimizer, self.config.schedule,
            total_steps=int(self.trainer.estimated_stepping_batches),
            total_epochs=int(self.trainer.max_epochs or 1),
        )
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
