"""fgbench.formats: each named variant on the values that tell the variants apart (worked out by
hand from the rule each docstring states)."""

from __future__ import annotations

import pytest

from fgbench import formats


def test_fmt_value_is_a_table_cell() -> None:
    assert formats.fmt_value(None) == "-" and formats.fmt_value(formats.MISSING) == "-"
    assert formats.fmt_value(81.5) == "81.50" and formats.fmt_value(81.5, 1) == "81.5"
    assert formats.fmt_value(0.0001) == "0.0001"  # below 10**-2: three significant digits, not 0.00
    assert formats.fmt_value(12345678.0) == "1.23e+07"
    assert formats.fmt_value(0.0) == "0.00"
    assert formats.fmt_value(0.05, 1) == "0.05" and formats.fmt_value(0.05) == "0.05"  # the cut follows digits
    assert formats.fmt_value(float("nan")) == "nan"
    assert formats.fmt_value(True) == "true" and formats.fmt_value(3) == "3"
    assert formats.fmt_value([224, 0.5]) == "[224, 0.50]"
    assert formats.fmt_value({"b": 1, "a": 2}) == '{"a":2,"b":1}'


def test_fmt_fixed_always_has_its_decimals() -> None:
    assert formats.fmt_fixed(81.5) == "81.50" and formats.fmt_fixed(0.0001) == "0.00"
    assert formats.fmt_fixed(1234.6, 0) == "1235" and formats.fmt_fixed(7) == "7.00"
    assert formats.fmt_fixed(None) == "-" and formats.fmt_fixed(True) == "-" and formats.fmt_fixed("x") == "-"


def test_fmt_compact_is_a_chart_readout() -> None:
    assert formats.fmt_compact(None) == "-"
    assert formats.fmt_compact(0.123456) == "0.1235" and formats.fmt_compact(2.5) == "2.5"
    assert formats.fmt_compact(81.456) == "81.46" and formats.fmt_compact(81.5) == "81.50"
    assert formats.fmt_compact(0.00123456) == "0.00123" and formats.fmt_compact(123456.0) == "1.23e+05"
    assert formats.fmt_compact(0.0) == "0"


def test_durations_and_clocks() -> None:
    assert [formats.fmt_duration(s) for s in (42, 59.6, 185, 3725)] == ["42s", "1m00s", "3m05s", "1h02m"]
    assert formats.fmt_duration(None) == "-" and formats.fmt_duration(float("nan")) == "-"
    # the progress line's clock rounds and pads the minutes
    assert [formats.fmt_clock(s) for s in (65, 64.5, 3725)] == ["01:05", "01:05", "1:02:05"]
    assert formats.fmt_clock(-1) == "--:--" and formats.fmt_clock(None) == "--:--"
    # the download's clock counts whole seconds and does not pad the minutes under an hour
    assert [formats.fmt_clock_floor(s) for s in (65, 65.9, 3725)] == ["1:05", "1:05", "1:02:05"]
    assert formats.fmt_clock_floor(float("inf")) == "--:--" and formats.fmt_clock_floor(None) == "--:--"


def test_toml_literals_for_the_reference_and_for_the_form() -> None:
    value = {"optim.lr": [0.1, 0.0001], "on": True, "name": 'say "hi"'}
    assert formats.toml_value(value) == '{"optim.lr" = [0.1, 0.0001], on = true, name = "say \\"hi\\""}'
    assert formats.toml_inline(value) == '{ "optim.lr" = [0.1, 0.0001], on = true, name = "say \\"hi\\"" }'
    assert formats.toml_value({}) == "{}" and formats.toml_inline({}) == "{}"
    assert formats.toml_value((512, 512)) == "[512, 512]" and formats.toml_inline(1e22) == "1e+22"
    # the reference refuses what TOML cannot hold; an input shows it as text
    with pytest.raises(TypeError):
        formats.toml_value(None)
    assert formats.toml_inline(None) == '"None"'
