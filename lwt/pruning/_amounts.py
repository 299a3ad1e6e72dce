"""One pruning amount for every layer, or one per layer: the shared resolution rule.

``per_layer(0.5, names, ...)`` gives every name the fraction 0.5;
``per_layer({"fc1": 0.9}, names, ...)`` checks the keys and values and returns only the
names given (the others are left alone by the caller).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from numbers import Real


def _fraction(value: object, where: str, high: float | None) -> float:
    span = f"[0, {'∞' if high is None else f'{high:g}'})"
    kind = "fraction" if high == 1 else "number"
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(
            f"{where} must be a {kind} in {span}, got {type(value).__name__} {value!r}"
        )
    if not (value >= 0.0 and (high is None or value < high)):  # also rejects NaN
        raise ValueError(f"{where} must be a {kind} in {span}, got {value}")
    return float(value)


def per_layer(
    amounts: float | dict[str, float],
    names: Iterable[str],
    what: str,
    *,
    value: str = "amount",
    high: float | None = 1.0,
) -> dict[str, float]:
    """Expand ``amounts`` to ``{name: number}`` and validate it.

    Args:
        amounts: one number for every name, or ``{name: number}`` for some of them.
        names: the known names (layers, blocks...), in the order wanted in the result.
        what: a plural noun phrase for the names, used in error messages
            (e.g. ``"prunable layers"``, ``"BasicBlocks/Bottlenecks"``).
        value: what the numbers are, for error messages (``"amount"``, ``"quality"``).
        high: numbers lie in ``[0, high)``: fractions by default; None for ``[0, ∞)``.

    Returns:
        For a number, ``{name: amounts}`` for every name; for a mapping, only its keys,
        in the order of ``names``.

    Raises:
        TypeError: ``amounts`` (or one of its values) is not a number.
        ValueError: a key is unknown — ``"['x'] unknown; choose from [...] (other names
            are not <what>)"`` — or a number is out of range (the message names the
            key).
    """
    known = list(dict.fromkeys(names))
    if isinstance(amounts, Mapping):
        unknown = [k for k in amounts if k not in known]
        if unknown:
            raise ValueError(
                f"{unknown} unknown; choose from {sorted(known)} "
                f"(other names are not {what})"
            )
        checked = {
            k: _fraction(v, f"{value} for {k!r}", high) for k, v in amounts.items()
        }
        return {k: checked[k] for k in known if k in checked}
    return dict.fromkeys(known, _fraction(amounts, value, high))
