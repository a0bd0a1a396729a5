"""One schema per action: a field added to TrainParams reaches the CLI and the Trainer's dialog with no other edit."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from pydantic import Field
from pydantic.dataclasses import dataclass as pdataclass

from mcp_core import cli_model
from mcp_core.params import FINETUNE_DEFAULTS, SCRATCH_DEFAULTS, TrainParams


@pdataclass
class WarmupParams(TrainParams):
    """TrainParams with one more field, as a future version might add."""

    warmup_epochs: int = Field(3, ge=0, title="Warm-up epochs", description="Epochs of linear warm-up.",
                               json_schema_extra={"group": "basic"})


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="multicellpose")
    cli_model.register(parser.add_subparsers())
    return parser


def test_a_new_field_becomes_a_cli_option_with_its_default(monkeypatch):
    monkeypatch.setattr(cli_model, "TrainParams", WarmupParams)
    parser = train_parser()
    args = parser.parse_args(["train", "--train-dir", "X", "--warmup-epochs", "5", "--finetune", "lora"])
    assert args.warmup_epochs == 5 and "warmup_epochs" in args.fields
    params = cli_model.build(WarmupParams, cli_model.given(args, args.fields))
    assert params.warmup_epochs == 5 and params.finetune == "lora"
    assert parser.parse_args(["train", "--train-dir", "X"]).warmup_epochs is None  # not given: the class's default
    train_help = parser._subparsers._group_actions[0].choices["train"].format_help()
    assert "--warmup-epochs" in train_help and "Epochs of linear warm-up. (default: 3)" in " ".join(train_help.split())


def test_seed_flags_map_to_the_finetune_field():
    parser = train_parser()
    for argv, mode, blocks in ((["--use-lora", "--lora-blocks", "2"], "lora", 2), (["--use-lora"], "lora", 4),
                               (["--unfreeze-blocks", "3"], "last_n", 3), (["--finetune", "last_n"], "last_n", 4),
                               ([], "all", 4)):
        args = parser.parse_args(["train", "--train-dir", "X", *argv])
        params = cli_model.build(TrainParams, {**cli_model.given(args, args.fields), **cli_model._legacy_finetune(args)})
        assert (params.finetune, params.finetune_blocks) == (mode, blocks), argv


def test_train_help_shows_every_default():
    exe = shutil.which("multicellpose", path=str(Path(sys.executable).parent))
    out = subprocess.run([exe, "train", "--help"], capture_output=True, text=True, check=True).stdout
    text = " ".join(out.split())
    assert "--batch-size BATCH_SIZE Crops per training step. (default: 8)" in text
    assert "--finetune {all,lora,last_n}" in text and "(default: all)" in text
    lr = f"(default: the base model's: {FINETUNE_DEFAULTS['learning_rate']} to fine-tune cpsam, " \
         f"{SCRATCH_DEFAULTS['learning_rate']} from scratch (unet, tiny))"
    assert lr in text
    assert "--rescale, --no-rescale" in text
