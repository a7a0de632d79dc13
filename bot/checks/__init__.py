"""What the `release-guard` check run shows: its output, annotations and their causes.

`bot.checks.output` turns a scan report (or a reason there is none) into the check run's
title, Markdown summary, conclusion and annotations; `bot.checks.hints` finds the repository
line that most likely causes a finding. Both are pure: the handler fetches and sends.
"""
