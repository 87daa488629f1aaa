"""Recipes, overrides and optimiser groups (no training here)."""

from __future__ import annotations

import math

import pytest
import torch

from depthsmith.train import ConfigError, list_recipes, resolve_config
from depthsmith.train.config import parse_override
from depthsmith.train.data import dataset_configs
from depthsmith.train.module import build_model
from depthsmith.train.optim import build_optimizer, build_scheduler

RECIPES = ["enc-dec-irv2-nyu", "enc-dec-irv2-nyu-seed", "convnext-unet-report", "resnet50-transposed-report",
           "densedepth-nyu", "quickstart", "depth-anything-v2-metric-nyu"]
# Recipes that fine-tune a zoo network (model.name: init_from) build it from their checkpoint only, so the
# no-download build below cannot make them; tests/test_zoe_recipe.py builds and trains each on a tiny one.
ZOO_RECIPES = ["zoedepth-nyu"]

# What each recipe must say (the issues and README); checked against the files.
EXPECTED = {
    "enc-dec-irv2-nyu": dict(model="enc-dec-irv2", output="metric", optim="adam", amsgrad=True, lrs=(1e-4, 1e-4),
                             schedule="linear", epochs=15, batch=16, loss="paper", size=[240, 320], flip="hflip"),
    "enc-dec-irv2-nyu-seed": dict(model="enc-dec-irv2", output="relative", optim="adam", amsgrad=True,
                                  lrs=(1e-4, 1e-4), schedule="linear", epochs=15, batch=16, loss="paper",
                                  size=[240, 320], flip={"name": "hflip", "val": True}),
    "convnext-unet-report": dict(model="convnext-residual-unet", output="metric", optim="adamw", amsgrad=False,
                                 lrs=(1e-4, 1e-3), schedule="onecycle", epochs=80, batch=64, loss="report",
                                 size=[144, 256], flip=None),  # the report names augmentation future work
    "resnet50-transposed-report": dict(model="resnet50-transposed", output="metric", optim="adamw", amsgrad=False,
                                       lrs=(1e-4, 1e-3), schedule="onecycle", epochs=80, batch=64, loss="report",
                                       size=[144, 256], flip=None),
    "densedepth-nyu": dict(model="densedepth-densenet169", output="inverse", optim="adam", amsgrad=True,
                           lrs=(1e-4, 1e-4), schedule="none", epochs=20, batch=4, loss=None, size=None),
    # Depth-Anything-V2 metric_depth/train.py + dist_train.sh (values sourced in the recipe's comments).
    "depth-anything-v2-metric-nyu": dict(model="depth-anything-v2-small", output="metric", optim="adamw",
                                         amsgrad=False, lrs=(5e-6, 5e-5), schedule="poly", epochs=120, batch=4,
                                         loss={"silog": 1.0}, size=[518, 686], flip="hflip"),
}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def test_every_recipe_is_listed_with_a_description():
    recipes = list_recipes()
    assert sorted(recipes) == sorted(RECIPES + ZOO_RECIPES)
    assert all(len(note) > 20 and "\n" not in note for note in recipes.values())


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_builds_its_model_and_optimiser_groups(name):
    cfg = resolve_config(name, ["model.encoder_weights=null", "model.init_from=null"])  # no download
    model = build_model(cfg.model)
    assert model.output == cfg.model["output"]
    optimizer = build_optimizer(model, cfg.optim)
    groups = {g["name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"encoder", "decoder"}
    n_grouped = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert n_grouped == sum(p.numel() for p in model.parameters() if p.requires_grad)
    if name in EXPECTED:
        exp = EXPECTED[name]
        assert cfg.model["name"] == exp["model"]
        assert type(optimizer) is {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[exp["optim"]]
        assert groups["encoder"]["lr"] == pytest.approx(exp["lrs"][0])
        assert groups["decoder"]["lr"] == pytest.approx(exp["lrs"][1])
        assert groups["encoder"]["amsgrad"] is exp["amsgrad"]
        assert cfg.schedule.name == exp["schedule"]
        assert cfg.trainer.max_epochs == exp["epochs"]
        assert cfg.data.batch_size == exp["batch"]
        if exp["loss"]:
            assert cfg.loss == exp["loss"]
        if exp["size"]:
            resize = [t for t in cfg.data.transforms if isinstance(t, dict) and t.get("name") == "resize"]
            assert resize and resize[0]["size"] == exp["size"]
            flips = [t for t in cfg.data.transforms if t == "hflip" or (isinstance(t, dict) and t["name"] == "hflip")]
            assert flips == ([exp["flip"]] if exp["flip"] else [])


def test_paper_model_has_the_published_parameter_count():
    # Paper Table 2: 31.15M for Enc-Dec-IRv2 (the recipe must build the truncated encoder).
    model = build_model(resolve_config("enc-dec-irv2-nyu", ["model.encoder_weights=null"]).model)
    assert model.num_parameters() / 1e6 == pytest.approx(31.15, abs=0.1)


def _lr_history(recipe: str, sets: list[str], steps: int, total_steps: int, total_epochs: int):
    """The recipe's scheduler and each param group's learning rate over ``steps`` scheduler steps."""
    cfg = resolve_config(recipe, sets + ["model.encoder_weights=null"])
    opt = build_optimizer(build_model(cfg.model), cfg.optim)
    sched = build_scheduler(opt, cfg.schedule, total_steps=total_steps, total_epochs=total_epochs)
    history = []
    for _ in range(steps):
        history.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched["scheduler"].step()
    return sched, history + [[g["lr"] for g in opt.param_groups]]


def test_paper_schedule_decays_linearly_to_zero_per_epoch():
    # Keras poly_decay(power=1): epoch e of 15 trains at 1e-4 * (1 - e / 15).
    sched, history = _lr_history("enc-dec-irv2-nyu", ["model.name=test_resnet"], 15, 999, 15)
    assert sched["interval"] == "epoch"
    assert [h[0] for h in history[:15]] == pytest.approx([1e-4 * (1 - e / 15) for e in range(15)])
    assert history[15][0] == pytest.approx(0.0, abs=1e-12)


def test_report_onecycle_peaks_at_each_groups_lr():
    sched, history = _lr_history("convnext-unet-report", ["model.name=test_convnext", "model.decoder=residual_unet"],
                                 100, 100, 80)
    history = history[:100]
    assert sched["interval"] == "step"
    peaks = [max(h[i] for h in history) for i in range(2)]
    assert peaks == pytest.approx([1e-4, 1e-3], rel=1e-3)
    assert history[0] == pytest.approx([1e-4 / 25, 1e-3 / 25])  # OneCycle starts at max_lr / div_factor
    assert history[-1][1] < 1e-6  # cosine annealing down to max_lr / (25 * 1e4)


def test_overrides_are_parsed_as_yaml():
    assert parse_override("optim.lr=3e-4") == (["optim", "lr"], 3e-4)
    assert parse_override("trainer.max_epochs=2") == (["trainer", "max_epochs"], 2)
    assert parse_override("data.root=/data/nyu_data.zip") == (["data", "root"], "/data/nyu_data.zip")
    assert parse_override("data.transforms=[hflip]") == (["data", "transforms"], ["hflip"])
    cfg = resolve_config("quickstart", ["optim.lr=3e-4", "model.output=inverse", "trainer.precision=fp32"])
    assert cfg.optim.lr == 3e-4
    assert cfg.model["name"] == "resnet10t"  # a free section is merged, not replaced
    assert cfg.model["output"] == "inverse"
    assert cfg.trainer.precision == "32-true"


@pytest.mark.parametrize("bad, hint", [
    ("optim.lrr=1", "optim.lrr"), ("trainer.max_epoch=3", "max_epochs"), ("bogus=1", "bogus"),
    ("optim.lr", "key.subkey=value"), ("loss.l1=0.5", "not a mapping"),
])
def test_bad_overrides_name_the_key(bad, hint):
    with pytest.raises(ConfigError, match=hint):
        resolve_config("quickstart", [bad])


def test_missing_dataset_path_names_the_key_to_set():
    cfg = resolve_config("enc-dec-irv2-nyu")
    with pytest.raises(ConfigError, match=r"data\.root.*nyu_data\.zip"):
        dataset_configs(cfg)
    train, val = dataset_configs(resolve_config("enc-dec-irv2-nyu", ["data.root=/x/nyu_data.zip"]))
    assert train["path"] == val["path"] == "/x/nyu_data.zip"
    # 70/30 by a fixed seed: the two sides of one deterministic split.
    assert train["holdout"] == {"fraction": 0.3, "seed": 0, "by": "scene", "part": "train"}
    assert val["holdout"] == {"fraction": 0.3, "seed": 0, "by": "scene", "part": "val"}


def test_yaml_file_and_dict_configs(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: {name: test_resnet}\ndata: {train: {type: synthetic}}\noptim: {lr: 1e-3}\n")
    cfg = resolve_config(path)
    assert cfg.name == "mine" and cfg.optim.lr == 1e-3 and math.isclose(cfg.optim.eps, 1e-8)
    assert resolve_config({"model": {"name": "x"}}).model["name"] == "x"
    with pytest.raises(ConfigError, match="neither a recipe nor a YAML file"):
        resolve_config("no-such-recipe")


@pytest.mark.parametrize("bad, hint", [
    ("optim.lr=fast", r"override optim\.lr='fast'.*optim\.lr must be a number > 0.*got 'fast'"),
    ("optim.lr=-1e-3", r"optim\.lr must be a number > 0"),
    ("data.batch_size=2.5", r"data\.batch_size must be an integer >= 1"),
    ("trainer.max_epochs=ten", r"trainer\.max_epochs must be an integer >= -1 or null"),
    ("data.val_fraction=1.0", r"data\.val_fraction must be a number in \[0, 1\)"),
    ("schedule.name=cosin", r"schedule\.name must be one of none, linear, poly, onecycle, cosine; got 'cosin'"),
    ("trainer.precision=fp8", r"trainer\.precision must be one of auto, 32-true, bf16-mixed"),
    ("checkpoint.mode=lowest", r"checkpoint\.mode must be one of min, max"),
    ("trainer.deterministic=sometimes", r"trainer\.deterministic must be true or false"),
    ("optim={lr: fast}", r"optim\.lr must be a number > 0"),
])
def test_bad_override_values_name_key_value_and_what_is_valid(bad, hint):
    with pytest.raises(ConfigError, match=hint):
        resolve_config("quickstart", [bad])


def test_good_values_and_recipes_pass_the_value_checks():
    for recipe in list_recipes():
        resolve_config(recipe)
    cfg = resolve_config("quickstart", ["trainer.precision=32", "trainer.limit_train_batches=0.5", "optim.lr=1",
                                        "trainer.seed=null", "checkpoint.every_n_train_steps=10"])
    assert cfg.trainer.precision == "32-true" and cfg.optim.lr == 1


def test_a_bad_value_in_a_yaml_file_names_the_key(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("model: {name: test_resnet}\ndata: {train: {type: synthetic}, batch_size: 0}\n")
    with pytest.raises(ConfigError, match=r"data\.batch_size must be an integer >= 1; got 0"):
        resolve_config(path)


@pytest.mark.parametrize("bad, hint", [
    ("optim.name=sgd", r"optim\.name must be one of adam, adamw; got 'sgd'"),
    ("optim.lr=abc", r"optim\.lr must be a number > 0; got 'abc'"),
    ("optim.lr=-1", r"optim\.lr must be a number > 0; got -1"),
    ("trainer.max_epochs=1.5", r"trainer\.max_epochs must be an integer >= -1 or null; got 1\.5"),
    ("optim.amsgrad=maybe", r"optim\.amsgrad must be true or false; got 'maybe'"),
    ("logging.wandb=1", r"logging\.wandb must be true, false or auto; got 1"),
    ("trainer.seed=4294967296", r"trainer\.seed must be an integer in \[0, 4294967295\] or null"),
])
def test_a_bad_set_value_fails_before_anything_is_written(tmp_path, bad, hint):
    from depthsmith.train import train

    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=hint):
        train("quickstart", [bad], run_dir=run_dir)
    assert list(tmp_path.iterdir()) == []  # no run folder, no config.yaml


def test_the_schema_is_the_defaults_and_every_recipe_fits_it():
    import dataclasses

    from depthsmith.train.config import DEFAULTS
    from depthsmith.train.schema import TrainConfig, field_rules, from_dict

    assert DEFAULTS == dataclasses.asdict(TrainConfig())
    assert DEFAULTS["optim"] == {"name": "adam", "lr": 1e-4, "encoder_lr": None, "decoder_lr": None,
                                 "weight_decay": 0.0, "amsgrad": False, "betas": [0.9, 0.999], "eps": 1e-8}
    for recipe in list_recipes():
        cfg = resolve_config(recipe)
        assert isinstance(cfg, TrainConfig) and from_dict(TrainConfig, cfg.to_dict()) == cfg
    rules = field_rules()  # what a CLI or the docs can list
    assert rules["optim.name"] == "must be one of adam, adamw"
    assert rules["data.batch_size"] == "must be an integer >= 1"
    assert rules["trainer.matmul_precision"] == "must be one of highest, high, medium, null"
    assert "model.name" not in rules and "loss" not in rules  # free-form: checked where they are used


def test_the_optimiser_and_schedule_builders_take_exactly_the_schema_choices():
    # Checked once (schema.py); optim.py's tables must cover every choice and nothing else,
    # so a choice added to one side only fails here instead of deep inside training.
    import depthsmith.train.optim as optim
    from depthsmith.train.schema import choices

    assert set(optim.OPTIMIZERS) == set(choices("optim.name"))
    assert set(optim.SCHEDULES) == set(choices("schedule.name"))
    assert not hasattr(optim, "ConfigError")  # no second check of the names there
    model = build_model(resolve_config("quickstart", ["model.name=test_resnet"]).model)
    for name in choices("schedule.name"):
        cfg = resolve_config("quickstart", ["model.name=test_resnet", f"schedule.name={name}"])
        sched = build_scheduler(build_optimizer(model, cfg.optim), cfg.schedule, total_steps=10, total_epochs=2)
        assert (sched is None) == (name == "none")


@pytest.mark.parametrize("flags, accelerator, expected", [
    ({"avx512f", "avx512_bf16"}, "cpu", "bf16-mixed"),
    ({"avx512f", "avx512_vnni"}, "cpu", "32-true"),  # bf16 would be emulated: 4x slower than fp32
    ({"avx2"}, "auto", "32-true" if not torch.cuda.is_available() else None),
    ({"avx512f", "avx512_bf16"}, "gpu", "32-true" if not torch.cuda.is_available() else None),  # no GPU to ask
])
def test_training_precision_auto_is_the_devices_answer_in_lightnings_words(monkeypatch, flags, accelerator, expected):
    from depthsmith import cpu
    from depthsmith.device import resolve_precision
    from depthsmith.train.run import _resolve

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))

    def trained_with(precision):
        sets = [f"trainer.precision={precision}", f"trainer.accelerator={accelerator}"]
        return _resolve("quickstart", sets, False, None, (None, None, None)).trainer.precision

    if expected is not None:
        assert trained_with("auto") == expected
        # the one decision, the one inference makes (runtime asks resolve_precision too)
        assert resolve_precision("auto", accelerator) == {"bf16-mixed": "bf16", "32-true": "fp32"}[expected]
    assert trained_with("32-true") == trained_with("fp32") == "32-true"  # kept; shorthands spelt out
    assert trained_with("64") == "64-true" and trained_with("bf16") == "bf16-mixed"


def test_precision_choices_are_lightnings_names_and_shorthands_for_them():
    import typing

    from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT_STR  # Lightning's own list

    from depthsmith.train.schema import LIGHTNING_PRECISIONS, PRECISION_ALIASES, choices

    lightning_names = set(typing.get_args(_PRECISION_INPUT_STR))
    assert set(LIGHTNING_PRECISIONS) - {"auto"} <= lightning_names
    assert set(PRECISION_ALIASES.values()) <= set(LIGHTNING_PRECISIONS)
    assert set(choices("trainer.precision")) == set(LIGHTNING_PRECISIONS) | set(PRECISION_ALIASES)
    for alias, name in PRECISION_ALIASES.items():
        assert resolve_config("quickstart", [f"trainer.precision={alias}"]).trainer.precision == name


@pytest.mark.parametrize("recipe", RECIPES + ZOO_RECIPES)
def test_a_resolved_config_is_typed_and_survives_its_config_yaml(tmp_path, recipe):
    from depthsmith.train.config import dump_config, yaml_load
    from depthsmith.train.schema import DataConfig, TrainConfig, TrainerConfig

    cfg = resolve_config(recipe, ["trainer.precision=bf16", "optim.lr=3e-4", "data.root=/x/nyu_data.zip"])
    assert isinstance(cfg, TrainConfig) and isinstance(cfg.trainer, TrainerConfig) and isinstance(cfg.data, DataConfig)
    assert cfg.trainer.precision == "bf16-mixed" and cfg.optim.lr == 3e-4 and cfg.name == recipe
    path = tmp_path / "config.yaml"  # what train() writes and --resume reads
    path.write_text(dump_config(cfg))
    again = resolve_config(path)
    assert again == cfg and again is not cfg
    assert yaml_load(path.read_text()) == cfg.to_dict()  # the file is the plain dict, key for key
    assert resolve_config(cfg) == cfg  # a TrainConfig is also a config to resolve (with overrides on top)
    assert resolve_config(cfg, ["optim.lr=1e-3"]).optim.lr == 1e-3 and cfg.optim.lr == 3e-4  # a copy, not the same


@pytest.mark.parametrize("raw, hint", [
    ({"model": {"name": "x"}, "optim": {"lrr": 1}}, r"unknown config key 'optim\.lrr'; valid keys at optim: name, lr"),
    ({"model": {"name": "x"}, "trainer": {"seed": "zero"}}, r"trainer\.seed must be an integer in .*; got 'zero'"),
    ({"model": {"name": "x"}, "logging": True}, r"config key 'logging' must be a mapping"),
    ({"model": "resnet", "data": {}}, r"config key 'model' must be a mapping"),
    ({"model": {"name": "x"}, "schedule": {"name": 3}}, r"schedule\.name must be one of none, linear"),
])
def test_an_unknown_key_or_a_wrong_type_is_a_config_error_naming_the_key(tmp_path, raw, hint):
    import yaml

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(raw))
    for config in (raw, path):  # a dict and a YAML file: the same checks
        with pytest.raises(ConfigError, match=hint):
            resolve_config(config)
