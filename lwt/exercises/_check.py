"""What every implement-it check shares: running the learner's code with the library
out of reach, and a verdict that names the first failing case.

A check calls the learner's function inside :class:`Guard`, which watches every call
made while it runs (``sys.setprofile``): a call into the module that holds lwt's own
answer (e.g. ``lwt/quantization/`` for the straight-through estimator), or into a
named torch shortcut (``torch.fake_quantize_per_tensor_affine``), is recorded and the
check says "not yet". With ``integer_only`` it also watches torch's operations
(``TorchFunctionMode``) and rejects any that returns a floating-point tensor: lessons
about integer arithmetic cannot be passed in float.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_LWT = Path(__file__).resolve().parents[1]


class _IntegerOnly(TorchFunctionMode):
    """Records the first torch operation whose result is a floating-point tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.first: str | None = None

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        out = func(*args, **(kwargs or {}))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        if self.first is None and any(
            isinstance(o, torch.Tensor) and o.is_floating_point() for o in outs
        ):
            self.first = f"{getattr(func, '__name__', func)} returned {outs[0].dtype}"
        return out


class Guard:
    """Run learner code with lwt's reference (and named shortcuts) out of reach.

    Args:
        hidden: lwt modules or packages (``"quantization"``, ``"measure.py"``) whose
            code must not run while the learner's function runs.
        shortcuts: torch functions that would do the exercise in one call.
        hidden_paths: other source files that would (e.g. torch's FLOP counter).
        integer_only: reject any torch operation that returns a float tensor.
    """

    def __init__(
        self,
        hidden: Iterable[str],
        *,
        shortcuts: Iterable[Callable] = (),
        hidden_paths: Iterable[str] = (),
        integer_only: bool = False,
    ) -> None:
        self.prefixes = tuple(str(_LWT / h) for h in hidden) + tuple(hidden_paths)
        self.shortcuts = {id(f): f"torch.{f.__name__}" for f in shortcuts}
        self.integer_only = integer_only
        self.violation: str | None = None

    def _profile(self, frame, event, arg) -> None:  # noqa: ANN001
        if self.violation is not None:
            return
        if event == "call" and frame.f_code.co_filename.startswith(self.prefixes):
            path = Path(frame.f_code.co_filename)
            where = path.relative_to(_LWT.parent) if _LWT in path.parents else path.name
            self.violation = (
                f"{frame.f_code.co_name} ({where}): the check hides this ready-made "
                "answer while your code runs; write it yourself"
            )
        elif event == "c_call" and id(arg) in self.shortcuts:
            self.violation = (
                f"{self.shortcuts[id(arg)]}, which does it all in one call; "
                "write the steps yourself"
            )

    def call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` under the guard (exceptions propagate)."""
        old = sys.getprofile()
        mode = _IntegerOnly() if self.integer_only else None
        sys.setprofile(self._profile)
        try:
            if mode is None:
                return fn(*args, **kwargs)
            with mode:
                out = fn(*args, **kwargs)
            if self.violation is None and mode.first is not None:
                self.violation = (
                    f"floating point ({mode.first}): this exercise is integer "
                    "arithmetic; keep every tensor int64"
                )
            return out
        finally:
            sys.setprofile(old)


class NotYet(Exception):
    """The learner's function failed a case (already explained on screen)."""


def attempt(name: str, guard: Guard, fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run the learner's ``fn`` under ``guard``; on a stub, an exception or a hidden
    call, print why and raise :class:`NotYet`."""
    try:
        out = guard.call(fn, *args, **kwargs)
    except NotImplementedError:
        print(f"not yet: {name} still raises NotImplementedError (fill in the stub)")
        raise NotYet from None
    except Exception as e:  # noqa: BLE001 - the learner's bug, shown as a verdict
        print(f"not yet: {name} raised {type(e).__name__}: {e}")
        raise NotYet from None
    if guard.violation is not None:
        print(f"not yet: {name} called {guard.violation}")
        raise NotYet
    return out


def fail(
    what: str,
    *,
    case: str | None = None,
    expected: object = None,
    got: object = None,
    hint: str | None = None,
) -> None:
    """Print a "not yet" verdict with the first failing case, then raise NotYet."""
    lines = [f"not yet: {what}"]
    for label, value in (("case", case), ("expected", expected), ("got", got)):
        if value is not None:
            lines.append(f"  {label + ':':<10}{value}")
    if hint:
        lines.append(f"  likely cause: {hint}")
    print("\n".join(lines))
    raise NotYet


def expect_tensor(got: object, shape: tuple[int, ...], what: str, case: str) -> None:
    """Fail unless ``got`` is a tensor of ``shape``."""
    if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(shape):
        found = (
            tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        )
        fail(what, case=case, expected=tuple(shape), got=found)


def verdict(check: Callable[[], str]) -> bool:
    """Run a check body: print ``pass: …`` with its message and return True, or
    return False after a NotYet (the reason is already printed)."""
    try:
        message = check()
    except NotYet:
        return False
    print(f"pass: {message}")
    return True


def short(t: object, n: int = 8) -> str:
    """A tensor or list shown in one short line."""
    if isinstance(t, torch.Tensor):
        t = t.flatten().tolist()
    if isinstance(t, (list, tuple)) and len(t) > n:
        return f"[{', '.join(map(_fmt, t[:n]))}, …] ({len(t)} values)"
    if isinstance(t, (list, tuple)):
        return f"[{', '.join(map(_fmt, t))}]"
    return _fmt(t)


def _fmt(v: object) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
