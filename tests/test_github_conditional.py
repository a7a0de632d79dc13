"""Conditional requests: the ETag cache the installation clients share, and the double's 304s."""

from __future__ import annotations

import pytest

from bot.double.server import GitHubDouble
from bot.engine.policy import Policy
from bot.github import GitHubApp
from bot.github.conditional import ConditionalCache
from bot.handlers.verdicts import Subject, policy_digest

pytest_plugins = ["tests.ghdouble.fixtures"]

API = "https://ghe.example/api/v3"
CONFIG = f"{API}/repos/o/r/contents/.github/release-guard.yml?ref={'a' * 40}"


def test_only_the_repeated_gets_are_kept_and_each_installation_apart() -> None:
    cache = ConditionalCache(api_url=API)
    mine, theirs = cache.view(1), cache.view(2)
    mine[CONFIG] = ('"e1"', None, {"content": "x"}, None)
    mine[f"{API}/repos/o/r/check-runs/5"] = ('"e2"', None, {"id": 5}, None)
    mine[f"{API}/repos/o/r/git/trees/{'a' * 40}"] = (None, None, {"tree": []}, None)
    assert list(mine) == [CONFIG]  # check runs are not kept, nor answers without validators
    assert CONFIG not in theirs
    with pytest.raises(KeyError):
        theirs[CONFIG]
    assert cache.cacheable(f"{API}/repos/o/r/actions/runs?head_sha=x&per_page=100")
    assert cache.cacheable(f"{API}/repos/o/r/actions/runs/12/artifacts?per_page=100")
    assert not cache.cacheable("https://elsewhere.example/repos/o/r/contents/x?ref=main")


def test_each_caller_gets_its_own_copy_and_the_cache_is_bounded() -> None:
    cache = ConditionalCache(api_url=API, max_entries=2, max_chars=100)
    view = cache.view(1)
    view[CONFIG] = ('"e1"', None, {"content": "x"}, None)
    view[CONFIG][2]["content"] = "changed by a caller"
    assert view[CONFIG][2] == {"content": "x"}
    for n in range(3):
        view[f"{API}/repos/o/r/contents/f{n}"] = ('"e"', None, {"n": n}, None)
    assert len(cache) == 2 and CONFIG not in view
    view[f"{API}/repos/o/r/contents/big"] = ('"e"', None, {"x": "y" * 200}, None)
    assert f"{API}/repos/o/r/contents/big" not in view


@pytest.mark.asyncio
async def test_a_304_is_answered_from_the_cache_and_not_counted(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    ghdouble.add_file(repo, ".github/release-guard.yml", "rules: {}\n", ref="a" * 40)
    pull = ghdouble.add_pull(repo, head_sha="b" * 40)
    gh = await github_app.installation(repo.installation_id or 0)
    url = f"/repos/{repo.full_name}/contents/.github/release-guard.yml{{?ref}}"
    first = await gh.getitem(url, url_vars={"ref": "a" * 40})
    assert gh.rate_limit is not None
    after_first = gh.rate_limit.remaining
    second = await gh.getitem(url, url_vars={"ref": "a" * 40})
    assert first == second and first["type"] == "file"
    [fetched, revalidated] = ghdouble.requests_to("GET", "*/contents/*")
    assert (fetched.status, revalidated.status) == (200, 304)
    assert "if-none-match" in {k.lower() for k in revalidated.headers}
    assert ghdouble.not_modified == 1
    # The double, as GitHub, did not count the 304: the next request costs exactly one.
    await gh.getitem(f"/repos/{repo.full_name}/pulls/{pull.number}")
    assert gh.rate_limit.remaining == after_first - 1


def test_the_policy_digest_is_stable_and_sees_every_change() -> None:
    assert policy_digest(Policy()) == policy_digest(Policy())
    assert policy_digest(Policy()) != policy_digest(Policy(deny=("*.map",)))


def test_a_subject_is_its_digest_else_its_id_and_size() -> None:
    digest = "sha256:" + "AB" * 32
    assert Subject("artifact", 1, 10, digest).identity == "sha256:" + "ab" * 32
    assert Subject("asset", 1, 10, "md5:x").identity == "asset:1:10"
    assert Subject("artifact", 1, 10).identity == "artifact:1:10"
