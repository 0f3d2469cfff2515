"""Finding what a pickle would call, without unpickling it; refusing pickles that hold more than weights.

For a torch zip checkpoint (what ``torch.save`` writes) torch's own static scan,
``torch.serialization.get_unsafe_globals_in_checkpoint``, lists the globals its weights-only loader does not allow
(`unsafe_zip_globals`). That scan reads only zip checkpoints and only the opcodes ``torch.save`` writes by default
(pickle protocol 2), so this module keeps a scan of its own (`unsafe_pickle_globals`, over ``pickletools.genops``)
for what it does not cover: torch's legacy format and bare pickles (not zips), and a zip whose ``data.pkl`` uses
other opcodes (``torch.save(..., pickle_protocol=4)``, or a hand-made file). `refuse_unsafe_globals` then names the
globals that would run code (``os.system``, ``builtins.exec``, ...). torch's ``weights_only=True`` loader stays the
gate; the scan gives the person a precise reason.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import torch

from app.core.errors import ModelFileError


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# What a pickle would call to run code when opened (module roots, and builtins by name).
_CODE_MODULES = _words(
    "os posix nt subprocess sys shutil socket runpy importlib pty webbrowser code codeop pickle _pickle marshal ctypes "
    "types pathlib io _io tempfile multiprocessing threading asyncio urllib http requests timeit pdb platform signal "
    "glob inspect operator functools commands popen2 dill cloudpickle"
)
_CODE_BUILTINS = _words(
    "eval exec compile open __import__ getattr setattr delattr globals locals vars breakpoint input execfile apply "
    "reload file"
)
_STRING_OPS = _words("SHORT_BINUNICODE BINUNICODE BINUNICODE8 UNICODE SHORT_BINSTRING BINSTRING STRING SHORT_BINBYTES")
_PUSH_NOTHING = _words("PUT BINPUT LONG_BINPUT MEMOIZE PROTO FRAME")


def unsafe_zip_globals(source: str | Path | IO[bytes], data_pkl: Callable[[], bytes]) -> set[str]:
    """The globals in a torch zip checkpoint that torch's weights-only loader does not allow, without unpickling.

    Args:
        source: the checkpoint: a path, or a binary file object at its start.
        data_pkl: returns the bytes of its ``data.pkl``, for when torch's scan cannot read them.
    """
    try:
        return set(torch.serialization.get_unsafe_globals_in_checkpoint(source))
    except (pickle.UnpicklingError, ValueError, RuntimeError, EOFError):  # opcodes or a layout torch's scan lacks
        return unsafe_pickle_globals([io.BytesIO(data_pkl())])


def unsafe_pickle_globals(streams: Iterable[IO[bytes]], count: int = 1) -> set[str]:
    """The globals the pickles in each stream refer to that torch's weights-only loader does not allow."""
    allowed = _allowed_globals()
    return {
        g
        for g in pickle_globals(streams, count)
        if g not in allowed and not (g.startswith("torch.") and g.endswith(("Storage", "_rebuild_tensor_v2")))
    }


def pickle_globals(streams: Iterable[IO[bytes]], count: int = 1) -> set[str]:
    """The ``module.name`` globals the pickles in each stream refer to, found without unpickling anything.

    ``count`` pickles are read one after the other (torch's legacy format writes five before the raw data).
    Reading stops quietly at anything that is not a pickle: torch's loader refuses those on its own.
    """
    found: set[str] = set()
    for stream in streams:
        for _ in range(count):
            if not _scan_one(stream, found):
                break
    return found


def _scan_one(stream: IO[bytes], found: set[str]) -> bool:
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # the values pushed most recently (strings, or None for anything else)
    try:
        for op, arg, _pos in pickletools.genops(stream):
            name = op.name
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.add(f"{module}.{attr}")
                pushed.append(None)
            elif name == "STACK_GLOBAL":
                if len(pushed) >= 2 and isinstance(pushed[-1], str) and isinstance(pushed[-2], str):
                    found.add(f"{pushed[-2]}.{pushed[-1]}")
                else:
                    found.add("<unknown>.<unknown>")
                pushed.append(None)
            elif name in _STRING_OPS:
                pushed.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = pushed[-1] if pushed else None
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                pushed.append(memo.get(int(arg)))
            elif name == "STOP":
                return True
            elif name not in _PUSH_NOTHING:
                pushed.append(None)
            del pushed[:-8]
    except Exception:  # not (or no longer) a pickle: nothing more to scan
        return False
    return False


def _allowed_globals() -> set[str]:
    """What torch's weights-only loader allows (torch has no public list of its defaults)."""
    allowed = {"collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_parameter"}
    try:
        from torch import _weights_only_unpickler as wou

        allowed |= set(wou._get_allowed_globals())
        allowed |= set(wou._get_user_allowed_globals())
    except (ImportError, AttributeError):  # private API: fall back to the torch names below
        pass
    return allowed


def _is_code(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    if module in ("builtins", "__builtin__", "__builtins__"):
        return attr in _CODE_BUILTINS
    return module.split(".")[0] in _CODE_MODULES or (module.startswith("torch.") and attr in {"load", "hub"})


def refuse_unsafe_globals(file_name: str, found: set[str]) -> None:
    """Refuse a pickle with unsafe globals: one that would call code or build objects other than weights."""
    unsafe = sorted(found)
    if not unsafe:
        return
    code = [g for g in unsafe if _is_code(g)]
    if code:
        raise ModelFileError(
            f"'{file_name}' is not a plain weights file: it tries to run code when opened (it calls "
            f"{', '.join(code[:3])}). It was not opened and nothing in it ran. Use model files only from sources you "
            "trust, and ask for a .safetensors file or a plain state dict."
        )
    raise ModelFileError(objects_message(file_name, unsafe))


def objects_message(file_name: str, objects: list[str]) -> str:
    shown = f" ({', '.join(objects[:3])})" if objects else ""
    return (
        f"'{file_name}' contains Python objects besides weights{shown}, or is damaged; it was not loaded for safety. "
        "Save a plain state dict (torch.save(model.state_dict(), path)) or a .safetensors file and try again."
    )
