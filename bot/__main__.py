"""Run the command line: `python -m bot` is the same as `release-guard`."""

from bot.cli.main import main

raise SystemExit(main())
