"""The command line: `release-guard` and its subcommands (`scan`, `jobs`, `retained`, `demo`, …)."""
