r"""`clsa train` and `clsa distill`: command-line flags generated from TrainArgs.

    clsa train --preset tiny --variant yoco --steps 200 --out-dir runs/yoco-tiny --device cpu
    clsa distill --preset tiny --variant clsa --from runs/yoco-tiny --out-dir runs/clsa-distill
    clsa train --preset tiny --variant clsa --from runs/clsa-distill --sparse \
        --out-dir runs/clsa-sparse
    torchrun --standalone --nproc_per_node=2 -m clsa.cli train --preset debug --device cpu \
        --steps 20 --out-dir runs/ddp-smoke

Every TrainArgs field is a flag (underscores become dashes) with its default shown in --help;
``--from`` is from_checkpoint, ``--override KEY=VALUE`` (repeatable) fills ``overrides``, and
``--sparse`` is ``--stage sparse``. ``clsa distill`` is ``clsa train --stage distill``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os

from clsa.config import PRESETS, VARIANTS
from clsa.train.args import DEVICES, DTYPES, PARALLEL, STAGES, TrainArgs

_CHOICES = {"preset": sorted(PRESETS), "variant": list(VARIANTS), "device": list(DEVICES),
            "dtype": list(DTYPES), "parallel": list(PARALLEL), "stage": list(STAGES)}
_TYPES = {"int": int, "float": float, "str": str, "int | None": int, "str | None": str}


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the command examples' line breaks and appends each option's default."""


def _override(text: str) -> tuple[str, object]:
    """'index_top_k=32' -> ('index_top_k', 32); values parse as JSON, else stay strings."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--override {text!r}: expected KEY=VALUE, e.g. "
                                         "--override index_top_k=32")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _add_options(parser: argparse.ArgumentParser, with_stage: bool) -> None:
    for f in dataclasses.fields(TrainArgs):
        help_text = f.metadata.get("help", "")
        if f.name == "overrides":
            parser.add_argument("--override", dest="overrides", action="append", type=_override,
                                default=[], metavar="KEY=VALUE",
                                help="a CLSAConfig field over the preset (repeatable), e.g. "
                                "--override index_top_k=32")
        elif f.name == "from_checkpoint":
            parser.add_argument("--from", dest="from_checkpoint", default=None, metavar="PATH",
                                help=help_text)
        elif f.name == "stage":
            if with_stage:
                parser.add_argument("--stage", default=f.default, choices=_CHOICES["stage"],
                                    help=help_text)
                parser.add_argument("--sparse", dest="stage", action="store_const",
                                    const="sparse", default=argparse.SUPPRESS,
                                    help="shorthand for --stage sparse")
        elif f.type == "bool":
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=f.default,
                                action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=f.default,
                                type=_TYPES[f.type], choices=_CHOICES.get(f.name),
                                help=help_text)


def _run(ns: argparse.Namespace, stage: str | None) -> int:
    from clsa.train.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(TrainArgs)
              if hasattr(ns, f.name)}
    values["overrides"] = dict(ns.overrides)
    if stage is not None:
        values["stage"] = stage
    metrics = train(TrainArgs(**values))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one copy of the final metrics
        print(json.dumps(metrics, indent=2))
    return 143 if "stopped_at" in metrics else 0  # 128 + SIGTERM: checkpointed, not finished


def register(sub) -> None:
    """Add the ``train`` and ``distill`` subcommands to ``clsa``'s subparsers."""
    examples = __doc__.split("\n\n")[1]
    train = sub.add_parser("train", help="pretrain, or train sparsely (--sparse), a model",
                           description="Train a CLSA-family model (resumes from "
                           "OUT_DIR/checkpoints/latest when present).\n\n" + examples,
                           formatter_class=_Formatter)
    _add_options(train, with_stage=True)
    train.set_defaults(func=lambda ns: _run(ns, None))
    distill = sub.add_parser("distill", help="distil the indexer(s) from dense attention",
                             description="Train only the indexers: KL(dense attention || "
                             "indexer), backbone frozen (clsa train --stage distill).\n\n"
                             + examples, formatter_class=_Formatter)
    _add_options(distill, with_stage=False)
    distill.set_defaults(func=lambda ns: _run(ns, "distill"))
