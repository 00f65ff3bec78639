"""Change strategies in HALCON's shape: a model parameter takes `initial_value`, then
`values[i]` once `epochs[i]` epochs are done.

    {"model_param": "learning_rate", "initial_value": 0.01, "epochs": [30, 60], "values": [0.001, 0.0001]}

The value for an epoch depends on the number of completed epochs only, and it is set at the
start of each epoch, so a resumed run sets exactly what an uninterrupted one did.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..core.errors import DLError, DLParamError
from ..core.params import ParamTable, coerce

KEYS = ("model_param", "initial_value", "epochs", "values")
# parameters that shape the data, the batches or the model's placement: changing them in the
# middle of a run would change the iterations per epoch or the network, so they are set before
# training instead
NOT_CHANGEABLE = {
    "batch_size": "it sets the iterations per epoch",
    "batch_size_multiplier": "it sets the iterations per epoch",
    "image_width": "it sets the input size", "image_height": "it sets the input size",
    "image_num_channels": "it sets the input size", "image_dimensions": "it sets the input size",
    "class_ids": "it changes the network's head", "class_names": "it belongs to class_ids",
    "backend": "it places the model", "device": "it places the model", "runtime": "it places the model",
    "precision": "it places the model",
}


@dataclass(frozen=True)
class ChangeStrategy:
    """One validated change strategy: `model_param` takes `initial_value`, then `values[i]`
    once `epochs[i]` epochs are done. Made by `parse_change` from HALCON's dict form.

    Attributes:
        model_param: the model parameter it changes, e.g. "learning_rate".
        initial_value: the value of the first epochs.
        epochs: strictly increasing counts of completed epochs after which a value applies.
        values: one value per entry of `epochs`.

    Examples:
        >>> from dlbatch.training import ChangeStrategy
        >>> strategy = ChangeStrategy("momentum", 0.9, (10,), (0.99,))
        >>> strategy.value_after(9), strategy.value_after(10)
        (0.9, 0.99)
        >>> strategy.as_dict()
        {'model_param': 'momentum', 'initial_value': 0.9, 'epochs': [10], 'values': [0.99]}
    """

    model_param: str
    initial_value: Any
    epochs: tuple[int, ...]
    values: tuple

    def value_after(self, done_epochs: int) -> Any:
        """The value for the epoch that starts after `done_epochs` completed epochs.

        Args:
            done_epochs: the number of completed epochs (0 before the first).

        Returns:
            The last value whose epoch count is <= done_epochs, else initial_value.
        """
        value = self.initial_value
        for epoch, v in zip(self.epochs, self.values):
            if done_epochs >= epoch:
                value = v
        return value

    def as_dict(self) -> dict:
        """HALCON's dict form, as `parse_change` takes it and a run's state stores it.

        Returns:
            {"model_param", "initial_value", "epochs", "values"} with lists.
        """
        return {"model_param": self.model_param, "initial_value": self.initial_value,
                "epochs": list(self.epochs), "values": list(self.values)}


def _where(i: int) -> str:
    return f"change strategy {i}"


def _epochs(raw, i: int) -> tuple[int, ...]:
    if isinstance(raw, (str, bytes, Mapping)) or not hasattr(raw, "__iter__"):
        raise DLParamError(f"{_where(i)}: 'epochs' must be a list of epoch counts, got {raw!r}")
    out = []
    for e in raw:
        if isinstance(e, bool) or not isinstance(e, (int, float)) or e != e or e < 0 or int(e) != e:
            raise DLParamError(f"{_where(i)}: 'epochs' must hold whole numbers >= 0 (the number of "
                               f"completed epochs after which a value applies), got {e!r}")
        out.append(int(e))
    if any(b <= a for a, b in zip(out, out[1:])):
        raise DLParamError(f"{_where(i)}: 'epochs' must increase strictly, got {out}")
    return tuple(out)


def parse_change(change, model) -> list[ChangeStrategy]:
    """Validate change strategies in HALCON's dict form against `model`.

    Every value is also tried on the model (and the old value put back), so a value the model
    refuses fails here, before the first step, not in the middle of the run. train_dl_model
    calls it with its `change` argument.

    Args:
        change: None, one dict or a list of dicts with exactly the keys model_param,
            initial_value, epochs (strictly increasing counts of completed epochs) and values
            (one per epoch count).
        model: the model the strategies will change (left as it was).

    Returns:
        One ChangeStrategy per dict, values converted as set_param converts them ([] for None).

    Raises:
        DLParamError: a missing or unknown key, an unknown parameter, a parameter that cannot
            change during training (batch_size, image sizes, class_ids, backend, device,
            precision, read-only or fixed ones), two strategies for one parameter, bad epochs,
            or a value the model refuses.

    Examples:
        >>> import dlbatch
        >>> from dlbatch.training import parse_change
        >>> model = dlbatch.create_dl_model("classification", class_ids=[0, 1], image_dimensions=[16, 16, 3])
        >>> [lr] = parse_change({"model_param": "learning_rate", "initial_value": 0.01,
        ...                      "epochs": [30, 60], "values": [0.001, 0.0001]}, model)
        >>> [lr.value_after(done) for done in (0, 29, 30, 60)]
        [0.01, 0.01, 0.001, 0.0001]
        >>> try:
        ...     parse_change({"model_param": "batch_size", "initial_value": 8, "epochs": [5], "values": [16]}, model)
        ... except dlbatch.DLParamError as err:
        ...     print(str(err).split(" (")[0])
        change strategy 0: 'batch_size' cannot change during training
    """
    if change is None:
        return []
    items = [change] if isinstance(change, Mapping) else change
    if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__"):
        raise DLParamError(f"change must be a dict or a list of dicts with keys {', '.join(KEYS)}, got {change!r}")
    table = ParamTable(model.model_type.name, model.model_type.param_specs())
    strategies: list[ChangeStrategy] = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise DLParamError(f"{_where(i)} must be a dict with keys {', '.join(KEYS)}, got {item!r}")
        missing = [k for k in KEYS if k not in item]
        unknown = sorted(set(item) - set(KEYS))
        if missing or unknown:
            raise DLParamError(f"{_where(i)}: {'missing ' + ', '.join(missing) if missing else ''}"
                               f"{'; ' if missing and unknown else ''}"
                               f"{'unknown ' + ', '.join(map(str, unknown)) if unknown else ''}; "
                               f"a strategy has exactly the keys {', '.join(KEYS)}")
        name = item["model_param"]
        spec = table.spec(name)  # unknown name: DLParamError listing similar ones
        if name in NOT_CHANGEABLE:
            raise DLParamError(f"{_where(i)}: {name!r} cannot change during training ({NOT_CHANGEABLE[name]}); "
                               "set it on the model before train_dl_model")
        if spec.readonly or spec.fixed:
            why = "read-only" if spec.readonly else "fixed when the model is created"
            raise DLParamError(f"{_where(i)}: {name!r} is {why} and cannot change during training")
        if any(s.model_param == name for s in strategies):
            raise DLParamError(f"{_where(i)}: {name!r} already has a strategy; give all its values in one")
        epochs = _epochs(item["epochs"], i)
        values = item["values"]
        if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
            raise DLParamError(f"{_where(i)}: 'values' must be a list with one value per entry of 'epochs'")
        values = list(values)
        if len(values) != len(epochs):
            raise DLParamError(f"{_where(i)}: 'epochs' has {len(epochs)} entries but 'values' {len(values)}; "
                               "give one value per epoch")
        try:
            initial = coerce(spec, item["initial_value"])
            values = [coerce(spec, v) for v in values]
        except DLParamError as e:
            raise DLParamError(f"{_where(i)}: {e}") from None
        _try_on_model(model, name, [initial, *values], i)
        strategies.append(ChangeStrategy(name, initial, epochs, tuple(values)))
    return strategies


def _try_on_model(model, name: str, values: list, i: int) -> None:
    old = model.get_param(name)
    try:
        for v in values:
            model.set_param(name, v)
    except DLError as e:
        raise DLParamError(f"{_where(i)}: the model refuses a value of {name!r}: {e}") from None
    finally:
        model.set_param(name, old)


def apply_change(strategies: list[ChangeStrategy], model, done_epochs: int) -> dict[str, Any]:
    """Set every strategy's value for the epoch after `done_epochs`; returns what was set."""
    chosen = {s.model_param: s.value_after(done_epochs) for s in strategies}
    for name, value in chosen.items():
        model.set_param(name, value)
    return chosen
