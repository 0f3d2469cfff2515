"""ZeroGPU: on a Space with ``SPACES_ZERO_GPU`` set, work that needs the GPU runs inside a ``@spaces.GPU``
function (the Space attaches a GPU only for such a call); everywhere else it runs as it is.

The decorated function is made once, when this module is imported (at start-up, as ZeroGPU requires), and runs
whatever it is given: ``run_on_gpu(embed_paths, backbone, files, ...)``.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)
SECONDS_ENV = "ALABEL_GPU_SECONDS"  # the longest one GPU call may take (ZeroGPU's default is 60 s)


def _direct(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def make_runner(env: Mapping[str, str], load: Callable[[str], Any] = importlib.import_module) -> Callable[..., Any]:
    """`run(fn, *args, **kwargs)`: inside one `spaces.GPU` function when ZeroGPU is on, else a plain call.

    Args:
        env: the environment (``SPACES_ZERO_GPU``, ``ALABEL_GPU_SECONDS``).
        load: imports the ``spaces`` package (a stand-in in tests).
    """
    if env.get("SPACES_ZERO_GPU", "").strip().lower() not in ("1", "true", "yes"):
        return _direct
    try:
        spaces = load("spaces")
    except ImportError:
        log.warning("SPACES_ZERO_GPU is set but the 'spaces' package is missing; running on the CPU.")
        return _direct
    try:
        seconds = int(env.get(SECONDS_ENV) or 120)
    except ValueError:
        seconds = 120
    return spaces.GPU(duration=seconds)(_direct)


run_on_gpu = make_runner(os.environ)
