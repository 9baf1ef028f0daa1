"""The experiment schema (rewire.experiments.schema): types, ranges, nesting, messages."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from rewire.experiments.base import RunSpec, select_rows
from rewire.experiments.schema import ConfigError, ExperimentConfig, check


@dataclass(frozen=True)
class Row(ExperimentConfig):
    name: str
    keep: float = field(default=0.05, metadata=check(above=0, at_most=1, example=0.01))
    p: float = field(default=0.1, metadata=check(at_least=0, example=0.1))


@dataclass(frozen=True)
class Example(ExperimentConfig):
    IGNORED = ("out_dir",)
    epochs: int = field(default=1, metadata=check(at_least=1, example=160))
    eps_255: float = field(default=8.0, metadata=check(at_least=0.25, at_most=64, unit="/255", example=8))
    method: str = field(default="dnw", metadata=check(choices=("rg", "dnw")))
    sparsities: list[float] = field(default=(0.9,), metadata=check(above=0, below=1, example=[0.9]))
    seeds: list[int] = (0,)
    rows: list[Row] = ()
    limit: int | None = None
    flag: bool = False

    def validate(self) -> None:
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"'seeds' {list(self.seeds)} has duplicates; e.g. seeds: [0, 1, 2]")


def error_of(values) -> str:
    with pytest.raises(ConfigError) as caught:
        Example.from_values(values, where="params.yaml 'cpu.example'")
    return str(caught.value)


def test_defaults_and_values_are_built_as_declared():
    config = Example.from_values({"epochs": 3, "rows": [{"name": "a", "keep": 0.5}], "out_dir": "x"})
    assert config.epochs == 3
    assert config.rows == (Row(name="a", keep=0.5, p=0.1),)
    assert config.seeds == (0,)  # lists become tuples: configs are frozen and hashable
    assert config.as_dict()["rows"] == [{"name": "a", "keep": 0.5, "p": 0.1}]  # plain values for records
    assert Example.from_values({"eps_255": 8}).eps_255 == 8.0 and isinstance(
        Example.from_values({"eps_255": 8}).eps_255, float
    )


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"epochs": -3}, "'epochs': -3 is not >= 1; e.g. epochs: 160"),
        ({"epochs": 0}, "'epochs': 0 is not >= 1"),
        ({"epochs": "3"}, "'epochs' must be an integer, got str '3'"),
        ({"epochs": True}, "'epochs' must be an integer"),
        ({"eps_255": 0.0314}, "'eps_255': 0.0314 is not in [0.25, 64] /255; e.g. eps_255: 8"),
        ({"eps_255": 128}, "'eps_255': 128 is not in [0.25, 64]"),
        ({"method": "DNW"}, "'method': 'DNW' is not one of 'rg', 'dnw'"),
        ({"sparsities": [0.5, 1.2]}, "'sparsities': 1.2 is not in (0, 1)"),
        ({"sparsities": 0.9}, "'sparsities' must be a list"),
        ({"seeds": [0, "a"]}, "'seeds[1]' must be an integer"),
        ({"seeds": [0, 0]}, "'seeds' [0, 0] has duplicates"),
        (
            {"rows": [{"name": "a"}, {"name": "b", "keep": 1.5}]},
            "'rows[1].keep': 1.5 is not in (0, 1]; e.g. keep: 0.01",
        ),
        ({"rows": [{"name": "b", "p": -1}]}, "'rows[0].p': -1 is not >= 0"),
        ({"rows": [{"keep": 0.5}]}, "'rows[0].name' is required"),
        ({"rows": [{"name": "a", "kep": 0.5}]}, "'rows[0].kep' is not a field of Row (did you mean 'keep'?)"),
        ({"epoch": 3}, "'epoch' is not a field of Example (did you mean 'epochs'?)"),
        ({"limit": "a"}, "'limit' must be int or NoneType"),
        ({"flag": 1}, "'flag' must be true or false"),
    ],
)
def test_a_bad_value_names_its_field_the_range_and_an_example(values, expected):
    message = error_of(values)
    assert message.startswith("params.yaml 'cpu.example'")
    assert expected in message


def test_every_problem_is_reported_at_once():
    message = error_of({"epochs": 0, "method": "x", "rows": [{"name": "a", "keep": 2.0}]})
    assert message.count("\n  - ") == 3
    assert "'epochs'" in message and "'method'" in message and "'rows[0].keep'" in message


def test_bounds_are_exclusive_or_inclusive_as_declared():
    assert Example.from_values({"rows": [{"name": "a", "keep": 1.0}]}).rows[0].keep == 1.0  # at_most: inclusive
    assert "(0, 1]" in error_of({"rows": [{"name": "a", "keep": 0.0}]})  # above: exclusive
    assert Example.from_values({"eps_255": 0.25}).eps_255 == 0.25  # at_least: inclusive


def test_replace_is_checked_too():
    config = Example.from_values({})
    assert config.replace(epochs=5).epochs == 5
    with pytest.raises(ConfigError, match="'epochs': 0 is not >= 1"):
        config.replace(epochs=0)


def test_select_rows_keeps_order_and_refuses_an_unknown_row():
    specs = [RunSpec("a", 0, "a-0"), RunSpec("b", 0, "b-0"), RunSpec("a", 1, "a-1")]
    assert [s.name for s in select_rows(specs, None)] == ["a-0", "b-0", "a-1"]
    assert [s.name for s in select_rows(specs, ["a"])] == ["a-0", "a-1"]
    assert [s.name for s in select_rows(specs, "b")] == ["b-0"]
    with pytest.raises(ConfigError, match="--only c: not a row of this plan; rows: a, b"):
        select_rows(specs, ["c"])
