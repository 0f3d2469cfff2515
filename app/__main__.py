"""`python -m app`: start the app (default), or `python -m app simulate ...`."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
