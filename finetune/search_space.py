"""finetune search's space: each parameter a list of choices or a range, read from YAML and checked against what
``finetune train`` accepts, drawn per trial, and turned back into command-line flags."""

from __future__ import annotations

import json
from dataclasses import dataclass

from finetune.errors import UserError

SPEC_KEYS = {"low", "high", "log", "step"}
# Arguments of finetune train that a search space may not hold, and why: the search sets them for every trial, or
# they would change what the trials are compared on.
NOT_SEARCHED = {
    **dict.fromkeys(
        ("seed", "seeds", "data_seed"),
        "the search sets the seeds (each trial the config's seed, the top_k trials --selection_seeds more); a "
        "searched seed would pick a lucky one",
    ),
    **dict.fromkeys(
        ("output_dir", "overwrite_output_dir", "resume_from_checkpoint", "resume", "disable_tqdm"),
        "the search sets it for every trial (trials go under --search_dir; a stopped search resumes with the same "
        "command)",
    ),
    "baseline": "the search fits the baseline once, beside the winner; set it in the config",
    **dict.fromkeys(
        (
            "metric_for_best_model",
            "greater_is_better",
            "validation_file",
            "validation_split_percentage",
            "max_eval_samples",
        ),
        "it changes what the trials are compared on; set it in the config",
    ),
    "test_file": "the test split is scored once, for the winner; set it in the config",
}


@dataclass
class Spec:
    """One parameter's range: ``choices`` (categorical), or ``low``..``high`` (int when both are ints)."""

    choices: list | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    def suggest(self, trial, name: str):
        """The trial's value of this parameter. Lists among the choices (kernel sizes) travel as JSON text."""
        if self.choices is not None:
            choice = trial.suggest_categorical(name, [encode(choice) for choice in self.choices])
            return decode(choice)
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(name, self.low, self.high, step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def holds(self, value) -> bool:
        """Whether ``value`` (the config's own) lies in this space."""
        if self.choices is not None:
            return encode(value) in [encode(choice) for choice in self.choices]
        return isinstance(value, (int, float)) and self.low <= value <= self.high

    def cast(self, value):
        """A config's value as this parameter's trials draw it: ``num_train_epochs: 6.0`` is 6 in an int range."""
        integers = self.choices is None and isinstance(self.low, int) and isinstance(self.high, int)
        return int(value) if integers and isinstance(value, float) and value.is_integer() else value

    def extremes(self) -> list:
        return list(self.choices) if self.choices is not None else [self.low, self.high]


def encode(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def decode(value):
    return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value


def load_space(path: str, check_value) -> dict[str, Spec]:
    """Reads a search space: ``name: [choice, ...]`` or ``name: {low: L, high: H, log: true, step: S}``.

    Every name must be an argument of ``finetune train``; every choice and both ends of a range must be values the
    argument takes (``check_value(name, value)`` raises a UserError otherwise); a range must hold more than a point.
    """
    from finetune.parsing import read_yaml

    document = read_yaml(path, "Search space")
    if not isinstance(document, dict) or not document:
        raise UserError(f"Search space {path} must map argument names to choices or ranges.")
    space = {}
    for name, entry in document.items():
        where = f"Search space {path}: {name}"
        if isinstance(entry, list):
            if not entry:
                raise UserError(f"{where}: the list of choices is empty.")
            spec = Spec(choices=entry)
        elif isinstance(entry, dict):
            unknown = sorted(set(entry) - SPEC_KEYS)
            if unknown or not {"low", "high"} <= set(entry):
                raise UserError(
                    f"{where}: a range is {{low: L, high: H}} with optional log and step"
                    + (f"; unknown key(s) {', '.join(unknown)}" if unknown else "")
                    + "."
                )
            low, high = entry["low"], entry["high"]
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in (low, high)):
                raise UserError(f"{where}: low and high must be numbers, got {low!r} and {high!r}.")
            if not low < high:
                raise UserError(f"{where}: the range {low}..{high} is empty; low must be below high.")
            if entry.get("log") and low <= 0:
                raise UserError(f"{where}: a log range must start above 0, got low {low}.")
            spec = Spec(low=low, high=high, log=bool(entry.get("log", False)), step=entry.get("step"))
        else:
            raise UserError(f"{where}: give a list of choices or a range {{low: L, high: H}}, not {entry!r}.")
        for value in spec.extremes():
            check_value(name, value)
        space[name] = spec
    return space


def check_pairs(path: str, space: dict[str, Spec], check_values) -> None:
    """Every two keys of the space together, at their choices and the ends of their ranges, must be values
    ``finetune train`` takes (``max_length`` 128 and ``window_stride`` 160 each pass alone, not together), so that
    no trial fails on a refused combination hours into a search. ``check_values(values)`` raises a UserError."""
    names = list(space)
    for first, name in enumerate(names):
        for other in names[first + 1 :]:
            for value in space[name].extremes():
                for other_value in space[other].extremes():
                    try:
                        check_values({name: value, other: other_value})
                    except UserError as error:
                        raise UserError(
                            f"Search space {path}: {name} {value!r} with {other} {other_value!r} is refused "
                            f"(a trial may draw both): {error}"
                        ) from None


def without_fixed(space: dict[str, Spec], given: dict, path: str) -> tuple[dict[str, Spec], dict]:
    """The space less the keys that a passed-on flag sets, and those keys with the flags' values: a flag fixes what it
    names for every trial (``--num_train_epochs 4`` searches the rest at 4 epochs), as it does for every other key."""
    fixed = {name: given[name] for name in space if name in given}
    if len(fixed) == len(space):
        flags = ", ".join(f"--{name}" for name in fixed)
        raise UserError(f"Search space {path}: the flags {flags} fix every key of it; nothing is left to search.")
    return {name: spec for name, spec in space.items() if name not in fixed}, fixed


def param_flags(params: dict) -> list[str]:
    flags = []
    for name, value in params.items():
        values = value if isinstance(value, list) else [value]
        flags += [f"--{name}", *(str(item).lower() if isinstance(item, bool) else str(item) for item in values)]
    return flags


def config_params(config: str, train_flags: list[str], space: dict[str, Spec]) -> dict:
    """The config's own values of the searched parameters (with the passed-on flags)."""
    from finetune.parsing import make_parser as train_parser
    from finetune.parsing import parse_namespace

    namespace = parse_namespace(["--config", config, *train_flags], train_parser())
    return {name: space[name].cast(getattr(namespace, name)) for name in space}
