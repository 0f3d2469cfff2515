"""The entry file a Hugging Face Space runs (`python space.py`, named by `app_file` in the README's front matter).

It starts the same app as `python -m app`, in Space mode: see "Host it on Hugging Face Spaces" in the README.
"""

import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no spin-waiting on a busy CPU

from app.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["--space", *sys.argv[1:]]))
