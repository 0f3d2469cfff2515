"""`python -m app`: start the app (default), or `python -m app simulate ...`."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads: no spin-waiting on a busy CPU

from app.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
