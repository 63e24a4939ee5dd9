"""Search spaces: YAML files of per-stage choices, validated on load, sampled into valid configs.

A space file names, for each architecture field, either one list of choices shared by all
four stages or a list of four lists (one per stage):

    resolution: 224            # costs and budgets are priced at this input size
    depths:     [[1, 2], [1, 2], [2, 4, 6], [1, 2]]
    widths:     [[32, 48], [64, 96], [128, 192], [256, 384]]
    head_dims:  [16, 32]       # or `heads:`; heads = the divisor of the width nearest width / head_dim
    kernels:    [3, 5, 7]
    windows:    [[4, 8], [2, 4], [1, 2], [1]]
    ffn_ratios: [2, 4]
    ffn_kernels: [3, 5]

A space with `proxy_res` set samples the way a proxy at that resolution sees the network:
windows before heads, and a stage's heads are left at their first choice where the window
leaves a single attention key (all head counts then compute the same function).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Callable, Sequence

from ..documents import read_yaml
from ..errors import FatnasError, shown
from ..paths import portable_path
from .config import NUM_STAGES, VALUE_RANGES, ConfigError, FATConfig, attention_keys, stage_output_sizes
from .variants import get_config

DEFAULT_SPACE = "fat"
# space key -> FATConfig field it feeds (head_dims/heads both feed `heads`)
ARCH_KEYS = {"depths": "depths", "widths": "widths", "heads": "heads", "head_dims": "heads",
             "kernels": "kernels", "windows": "windows", "ffn_ratios": "ffn_ratios",
             "ffn_kernels": "ffn_kernels"}
OTHER_KEYS = ("resolution", "name", "description", "drop_path_rate")
# order in which a stage's values are sampled (and named in Optuna: `width_0`, ...)
PARAM_ORDER = ("depths", "widths", "heads", "head_dims", "kernels", "windows", "ffn_ratios", "ffn_kernels")
HEAD_KEYS = ("heads", "head_dims")
# what each key's choices must be, checked before anything is derived from them: (integer?, low, high)
CHOICE_RANGES = {**VALUE_RANGES, "head_dims": (True, 1, 4096)}
MAX_CHOICES = 256  # per key and stage
MAX_RESOLUTION = 16384  # px; what fits memory is checked later, against the machine (estimate.memory)
# with a proxy resolution, windows are sampled before the heads they can make inert
CONDITIONAL_ORDER = ("depths", "widths", "kernels", "windows", "heads", "head_dims", "ffn_ratios", "ffn_kernels")

Suggest = Callable[[str, Sequence[Any]], Any]


class SpaceError(FatnasError):
    """An invalid search space; the message names the file, key, stage and rule."""


@dataclass(frozen=True)
class SearchSpace:
    """Per-stage choices for every architecture field, and the resolution costs are priced at.

    `proxy_res` (not part of the YAML file): the resolution the proxy trains at, which makes
    `sample` skip heads that cannot matter there (see the module docstring).
    """

    name: str
    choices: dict[str, tuple[tuple[Any, ...], ...]]  # key -> four tuples of choices
    resolution: int = 224
    drop_path_rate: float = 0.0
    source: str = ""
    proxy_res: int | None = None

    def sample(self, suggest: Suggest) -> FATConfig:
        """Draw one valid config; `suggest(name, choices)` is e.g. Optuna's suggest_categorical."""
        values: dict[str, list[Any]] = {}
        for key in PARAM_ORDER if self.proxy_res is None else CONDITIONAL_ORDER:
            if key in self.choices:
                values[key] = [self._draw(suggest, key, s, values) for s in range(NUM_STAGES)]
        return self.to_config(values)

    def _draw(self, suggest: Suggest, key: str, stage: int, values: dict[str, list[Any]]) -> Any:
        options = self.choices[key][stage]
        if key in HEAD_KEYS and self.heads_inert(stage, stage_value(values, "windows", stage)):
            return options[0]
        return suggest(param_name(key, stage), list(options))

    def heads_inert(self, stage: int, window: int) -> bool:
        """True where, at `proxy_res`, the window leaves the stage one attention key (heads then do nothing)."""
        if self.proxy_res is None:
            return False
        height, width = stage_output_sizes(self.proxy_res, self.proxy_res)[stage]
        return attention_keys(height, width, window) == 1

    def to_config(self, values: dict[str, list[Any]]) -> FATConfig:
        """A config from one value per stage for each key; heads snap to a divisor of the width."""
        fields: dict[str, Any] = {ARCH_KEYS[k]: list(v) for k, v in values.items() if k not in HEAD_KEYS}
        key = "head_dims" if "head_dims" in values else "heads"
        fields["heads"] = [snap_heads(key, w, v) for w, v in zip(fields["widths"], values[key])]
        return FATConfig(drop_path_rate=self.drop_path_rate, **fields)

    def published(self, name: str) -> FATConfig:
        """The published variant `name` as this space's networks train: with the space's drop path.

        Its own rate belongs to ImageNet's 300-epoch recipe and would handicap it against sampled networks.
        """
        return get_config(name).replace(drop_path_rate=self.drop_path_rate)

    def size(self) -> int:
        """Number of distinct points (products of per-stage choice counts)."""
        n = 1
        for per_stage in self.choices.values():
            for options in per_stage:
                n *= len(options)
        return n

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "resolution": self.resolution}
        if self.drop_path_rate:
            out["drop_path_rate"] = self.drop_path_rate
        for key, per_stage in self.choices.items():
            out[key] = [list(options) for options in per_stage]
        return out

    def param_names(self) -> list[str]:
        return [param_name(k, s) for k in PARAM_ORDER if k in self.choices for s in range(NUM_STAGES)]


def param_name(key: str, stage: int) -> str:
    """Name of one sampled value, e.g. `widths_2` (the same in Optuna and Ray)."""
    return f"{key}_{stage}"


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(FATConfig) if f.default is not dataclasses.MISSING}


def stage_value(values: dict[str, list[Any]], key: str, stage: int) -> Any:
    """One stage's value of a key, or FATConfig's default where the space leaves the key out."""
    if key in values:
        return values[key][stage]
    return _DEFAULTS[ARCH_KEYS[key]][stage]


def snap_heads(key: str, width: int, value: int) -> int:
    """The heads a `heads` or `head_dims` value gives at `width`: the nearest divisor of the width."""
    return nearest_divisor(width, width / value if key == "head_dims" else value)


def nearest_divisor(n: int, target: float) -> int:
    """The divisor of n closest to target (ties go to the smaller one)."""
    return min(divisors(n), key=lambda d: (abs(d - target), d))


def divisors(n: int) -> list[int]:
    """The divisors of n >= 1 in O(sqrt n) steps, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return small + [n // d for d in reversed(small) if d * d != n]


def shipped_spaces() -> dict[str, Traversable]:
    """The spaces packaged with fatnas (fatnas/model/search_spaces/*.yaml), by name."""
    folder = files("fatnas.model").joinpath("search_spaces")
    return {f.name.removesuffix(".yaml"): f for f in sorted(folder.iterdir(), key=lambda f: f.name)
            if f.name.endswith(".yaml")}


def resolve_space_path(spec: str | Path | None) -> Path | Traversable:
    """A path to a YAML file, or the name of a shipped space (e.g. `fat`)."""
    spec = DEFAULT_SPACE if spec is None else spec
    path = Path(spec)
    if path.is_file():
        return path
    shipped = shipped_spaces()
    if str(spec) in shipped:
        return shipped[str(spec)]
    raise SpaceError(f"search space {shown(str(spec))} not found; give a YAML path or one of: {', '.join(shipped)}")


def load_space(spec: str | Path | None = None) -> SearchSpace:
    """Load and validate a space by name or path."""
    path = resolve_space_path(spec)
    data = read_yaml(path, f"space {path}:", SpaceError)
    space = space_from_dict(data, source=str(path), default_name=path.name.removesuffix(".yaml").removesuffix(".yml"))
    return dataclasses.replace(space, source=portable_path(str(path)))  # as records keep it: no machine path


def space_from_dict(data: Any, *, source: str = "<dict>", default_name: str = "space") -> SearchSpace:
    """Validate a mapping of choices into a SearchSpace."""
    if not isinstance(data, dict):
        raise SpaceError(f"space {source}: expected a mapping of keys to choices")
    unknown = sorted(set(data) - set(ARCH_KEYS) - set(OTHER_KEYS))
    if unknown:
        raise SpaceError(f"space {source}: unknown key(s) {unknown}; accepted: "
                         f"{', '.join(list(ARCH_KEYS) + list(OTHER_KEYS))}")
    if "heads" in data and "head_dims" in data:
        raise SpaceError(f"space {source}: give either `heads` or `head_dims`, not both")
    required = ["depths", "widths"] + ([] if "heads" in data else ["head_dims"])
    missing = [k for k in required if k not in data]
    if missing:
        raise SpaceError(f"space {source}: missing key(s) {missing}")
    choices = {key: _per_stage_choices(source, key, data[key]) for key in PARAM_ORDER if key in data}
    resolution = data.get("resolution", 224)
    if not _positive_int(resolution) or resolution > MAX_RESOLUTION:
        raise SpaceError(f"space {source}: resolution = {shown(resolution)}: must be an integer from 1 to "
                         f"{MAX_RESOLUTION}")
    rate = data.get("drop_path_rate", 0.0)
    if not _is_number(rate) or not 0 <= rate < 1:
        raise SpaceError(f"space {source}: drop_path_rate = {shown(rate)}: must be a number in [0, 1)")
    for key in ("name", "description"):
        if key in data and not isinstance(data[key], (str, int, float)):
            raise SpaceError(f"space {source}: {key} = {shown(data[key])}: must be a text")
    space = SearchSpace(name=str(data.get("name", default_name)), choices=choices, resolution=resolution,
                        drop_path_rate=rate, source=source)
    _check_every_choice(space)
    return space


def _per_stage_choices(source: str, key: str, value: Any) -> tuple[tuple[Any, ...], ...]:
    if not isinstance(value, list) or not value:
        raise SpaceError(f"space {source}: {key}: expected a non-empty list of choices (or four lists, one per stage)")
    if all(isinstance(v, list) for v in value):
        if len(value) != NUM_STAGES:
            raise SpaceError(f"space {source}: {key}: expected {NUM_STAGES} per-stage lists, got {len(value)}")
        per_stage = value
    elif any(isinstance(v, list) for v in value):
        raise SpaceError(f"space {source}: {key}: mix of lists and values; give one list or four lists")
    else:
        per_stage = [value] * NUM_STAGES
    integer, low, high = CHOICE_RANGES[key]
    for s, options in enumerate(per_stage):
        if not options:
            raise SpaceError(f"space {source}: {key}[{s}]: empty choices; give at least one value")
        if len(options) > MAX_CHOICES:
            raise SpaceError(f"space {source}: {key}[{s}]: {len(options)} choices; at most {MAX_CHOICES} per stage")
        for option in options:
            if integer and not (_positive_int(option) and low <= option <= high):
                raise SpaceError(f"space {source}: {key}[{s}] = {_short(option)}: must be an integer from {low} "
                                 f"to {high}")
            if not integer and not (_is_number(option) and low < option <= high):
                raise SpaceError(f"space {source}: {key}[{s}] = {_short(option)}: must be a number above {low}, "
                                 f"at most {high}")
        if len(set(options)) != len(options):
            raise SpaceError(f"space {source}: {key}[{s}]: repeated choices {_short(options)}")
    return tuple(tuple(options) for options in per_stage)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _check_every_choice(space: SearchSpace) -> None:
    """Each choice must form a valid config with the other keys' first choices."""
    first = {k: [opts[0] for opts in per_stage] for k, per_stage in space.choices.items()}
    for key, per_stage in space.choices.items():
        for s, options in enumerate(per_stage):
            for option in options:
                values = {k: list(v) for k, v in first.items()}
                values[key][s] = option
                try:
                    space.to_config(values)
                except ConfigError as exc:
                    raise SpaceError(f"space {space.source}: {key}[{s}] choice {shown(option)} can never form a "
                                     f"valid config ({exc})") from None


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def grid(space: SearchSpace, limit: int = 10_000) -> list[FATConfig]:
    """Every point of a small space (at most `limit`), for tests and exhaustive sweeps."""
    keys = [(k, s) for k in PARAM_ORDER if k in space.choices for s in range(NUM_STAGES)]
    configs = []
    for combo in itertools.islice(itertools.product(*(space.choices[k][s] for k, s in keys)), limit):
        values: dict[str, list[Any]] = {}
        for (k, s), v in zip(keys, combo):
            values.setdefault(k, [None] * NUM_STAGES)[s] = v
        configs.append(space.to_config(values))
    return configs
