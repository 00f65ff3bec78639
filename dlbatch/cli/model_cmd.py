"""`dlbatch model create|info|set`: make a model file, look inside one, change its parameters."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from dlbatch.core.errors import DLParamError

from .model_info import echo_json, model_facts, print_facts
from .options import parse_assignments, parse_classes

model_app = typer.Typer(help="Create a model file, show what is inside one, change its parameters.",
                        no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})

ANCHOR_KEYS = ("min_level", "max_level", "anchor_num_subscales", "anchor_aspect_ratios", "anchor_angles")
ANCHOR_SAMPLES = 64  # boxes of this many samples are enough to suggest anchors in about a second


def _model_type_and_table(model_type: str):
    from dlbatch.core.params import ParamTable
    from dlbatch.core.plugins import manager
    mt = manager.model_type(model_type)
    return mt, ParamTable(mt.name, mt.param_specs())


def _image_dimensions(mt, table, width, height, channels) -> list[int] | None:
    """[W, H, C] with the model type's defaults for the ones not given; None when none is."""
    if width is None and height is None and channels is None:
        return None
    defaults = {**{n: table.specs[n].default for n in ("image_width", "image_height", "image_num_channels")},
                **{k: v for k, v in mt.default_params().items() if k.startswith("image_")}}
    return [width if width is not None else defaults["image_width"],
            height if height is not None else defaults["image_height"],
            channels if channels is not None else defaults["image_num_channels"]]


def _suggest_anchors(mt, table, dataset, params: dict[str, Any], user_set: dict[str, Any]) -> dict[str, Any]:
    """Anchor parameters from the boxes of up to ANCHOR_SAMPLES samples spread over the dataset,
    transformed to the model's image size as training will see them (HALCON's
    determine_dl_model_detection_param); parameters given with --set are kept."""
    import dlbatch
    from dlbatch.core.hyperparameters import initial_hyperparameters
    hp = initial_hyperparameters(table, mt, params)
    n = len(dataset)
    if n == 0:
        return {}
    picks = sorted(set(np.linspace(0, n - 1, min(n, ANCHOR_SAMPLES)).round().astype(int).tolist()))
    samples = [mt.preprocess_sample(dataset[i], hp, i) for i in picks]
    w, h = hp["image_width"], hp["image_height"]
    deepest = 0
    while w % 2 ** (deepest + 1) == 0 and h % 2 ** (deepest + 1) == 0 and 2 ** (deepest + 1) <= min(w, h):
        deepest += 1
    lowest = hp["min_level"]
    highest = user_set.get("max_level", deepest)
    if lowest > highest:
        return {}
    found = dlbatch.detection_params_from_samples(samples, w, h, instance_type=hp["instance_type"],
                                                  ignore_direction=hp["ignore_direction"], lowest_level=lowest,
                                                  highest_level=highest)
    return {k: found[k] for k in ANCHOR_KEYS if k in found and k not in user_set}


def create_params(model_type: str, *, dataset: Optional[str], classes: Optional[str], num_classes: Optional[int],
                  width: Optional[int], height: Optional[int], channels: Optional[int], assignments: list[str],
                  suggest_anchors: bool) -> tuple[dict[str, Any], list[str]]:
    """create_dl_model keywords from the options (dataset classes, then --classes, image size,
    then --set, which wins) and notes on where values came from."""
    mt, table = _model_type_and_table(model_type)
    user_set = parse_assignments(assignments)
    params: dict[str, Any] = {}
    notes: list[str] = []
    ds = None
    if dataset is not None:
        from dlbatch.datasets import read_dl_dataset
        ds = read_dl_dataset(dataset)
        if ds.model_type != mt.name:
            raise DLParamError(f"{dataset} is a {ds.model_type} dataset; create a {ds.model_type} model for it "
                               f"(dlbatch model create {ds.model_type} ...)")
        params["class_ids"], params["class_names"] = list(ds.class_ids), list(ds.class_names)
        if ds.instance_type and "instance_type" in table.specs:
            params["instance_type"] = ds.instance_type
        notes.append(f"{len(ds.class_ids)} classes from {dataset}")
    if classes is not None and num_classes is not None:
        raise DLParamError("give --classes or --num-classes, not both")
    if classes is not None:
        ids, names = parse_classes(classes)
        known = dict(zip(params.get("class_ids", []), params.get("class_names", [])))  # the dataset's names
        params["class_ids"] = ids
        params["class_names"] = names or [known.get(i, str(i)) for i in ids]
    elif num_classes is not None:
        params.pop("class_names", None)
        params["class_ids"] = list(range(num_classes))
    dims = _image_dimensions(mt, table, width, height, channels)
    if dims is not None:
        params["image_dimensions"] = dims
    params.update(user_set)
    default_ids = mt.default_params().get("class_ids", table.specs["class_ids"].default)
    if "class_ids" not in params and "num_classes" not in params and default_ids is None:
        raise DLParamError(f"a {mt.name} model needs its classes: give --dataset PATH (classes taken from it), "
                           "--classes 0,1,... or --num-classes K")
    if ds is not None and suggest_anchors and "min_level" in table.specs and "anchor_aspect_ratios" in table.specs:
        anchors = _suggest_anchors(mt, table, ds, params, user_set)
        if anchors:
            params.update(anchors)
            notes.append("anchors suggested from the dataset's boxes: " +
                         ", ".join(f"{k}={v}" for k, v in anchors.items()))
    return params, notes


@model_app.command("create", epilog="Example: dlbatch model create detection -o det.onnx --dataset data/coco.json "
                                    "--width 128 --height 128 --set learning_rate=0.001 --set solver_type=adam")
def create(model_type: str = typer.Argument(..., metavar="TYPE",
                                            help="model type: classification, detection, segmentation (or one a "
                                                 "plugin registered)"),
           out: Path = typer.Option(..., "-o", "--out", metavar="OUT.onnx", help="the .onnx file to write"),
           backbone: Optional[str] = typer.Option(None, help="backbone name (e.g. compact, resnet18) or an "
                                                            "ONNX classifier file"),
           dataset: Optional[str] = typer.Option(None, help="take class ids and names (detection: instance type "
                                                           "and anchors) from this dataset"),
           classes: Optional[str] = typer.Option(None, help="class ids, e.g. 0,1,2 or 1:cat,2:dog"),
           num_classes: Optional[int] = typer.Option(None, help="K classes with ids 0..K-1"),
           width: Optional[int] = typer.Option(None, help="input width in pixels"),
           height: Optional[int] = typer.Option(None, help="input height in pixels"),
           channels: Optional[int] = typer.Option(None, help="input channels (1 grey, 3 colour)"),
           assignments: Optional[list[str]] = typer.Option(None, "--set", help="KEY=VALUE: any model parameter, "
                                                           "the value parsed as JSON where it parses; repeatable"),
           suggest_anchors: bool = typer.Option(True, "--suggest-anchors/--no-suggest-anchors",
                                                help="detection with --dataset: anchor parameters fitted to the "
                                                     "dataset's boxes (--set values win)")) -> None:
    """Create a freshly initialised model and write it to an .onnx file."""
    import dlbatch
    params, notes = create_params(model_type, dataset=dataset, classes=classes, num_classes=num_classes,
                                  width=width, height=height, channels=channels, assignments=assignments or [],
                                  suggest_anchors=suggest_anchors)
    model = dlbatch.create_dl_model(model_type, backbone=backbone, **params)
    dlbatch.write_dl_model(model, out)
    for note in notes:
        typer.echo(note)
    w, h, c = model.get_param("image_dimensions")
    typer.echo(f"wrote {out}: {model.get_param('type')} model, backbone {model.meta.get('backbone')}, "
               f"{model.get_param('num_classes')} classes, {w}x{h}x{c} images, "
               f"{model.get_param('num_trainable_params')} trainable parameters")


def create_legacy(model_type: str = typer.Argument(...), out: Path = typer.Argument(...),
                  backbone: Optional[str] = typer.Option(None), num_classes: int = typer.Option(2),
                  width: int = typer.Option(224), height: int = typer.Option(224), channels: int = typer.Option(3),
                  seed: int = typer.Option(42)) -> None:
    """The old `dlbatch create TYPE OUT` (use `dlbatch model create TYPE -o OUT`)."""
    create(model_type, out=out, backbone=backbone, dataset=None, classes=None, num_classes=num_classes,
           width=width, height=height, channels=channels, assignments=[f"seed={seed}"], suggest_anchors=False)


@model_app.command("info", epilog="Example: dlbatch model info run/best.onnx --json")
def info(path: Path = typer.Argument(..., metavar="FILE.onnx", help="a .onnx model file"),
         as_json: bool = typer.Option(False, "--json", help="one JSON object instead of tables")) -> None:
    """Show a model file's parameters, parameter count, ONNX ops and opset, and steps trained."""
    import dlbatch
    model = dlbatch.read_dl_model(path)
    facts = model_facts(model, path)
    if as_json:
        echo_json(facts)
    else:
        print_facts(facts)


@model_app.command("set", epilog="Example: dlbatch model set m.onnx learning_rate=0.0005 solver_type=adam "
                                 "'class_weights=[1, 2]'")
def set_params(path: Path = typer.Argument(..., metavar="FILE.onnx",
                                          help="a dlbatch .onnx model file, rewritten in place"),
               assignments: list[str] = typer.Argument(..., metavar="KEY=VALUE",
                                                       help="KEY=VALUE pairs, values parsed as JSON where they "
                                                            "parse")) -> None:
    """Change model parameters in a model file (validated; the file is replaced atomically)."""
    import dlbatch
    values = parse_assignments(assignments, option="model set")
    model = dlbatch.read_dl_model(path)
    _, table = _model_type_and_table(model.get_param("type"))
    for name, value in values.items():
        if table.spec(name).runtime:
            raise DLParamError(f"{name!r} is a runtime parameter and is not stored in model files; pass "
                               f"--{name} to train, evaluate or apply instead")
        model.set_param(name, value)
    dlbatch.write_dl_model(model, path)
    for name in values:
        typer.echo(f"{name} = {model.get_param(name)!r}")
    typer.echo(f"wrote {path}")
