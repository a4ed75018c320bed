"""The dispatcher's fan-out over users (jobs/sync.each_user): bounded, every outcome reported, and closing it early
(the store failed) leaves nothing running."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

from jobs.sync import each_user


async def test_users_run_at_most_at_once_and_every_outcome_comes_back() -> None:
    running, most = 0, 0

    async def work(user_id: str) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01 if user_id != "u3" else 0)
        running -= 1
        if user_id == "u5":
            raise ValueError("u5's data is refused")
        return int(user_id[1:])

    users = [f"u{n}" for n in range(10)]
    async with aclosing(each_user(users, work, at_once=3)) as outcomes:
        found = {user_id: outcome async for user_id, outcome in outcomes}
    assert most == 3
    assert set(found) == set(users)
    assert isinstance(found.pop("u5"), ValueError)
    assert found == {user_id: int(user_id[1:]) for user_id in found}


async def test_closing_early_cancels_what_has_not_finished() -> None:
    finished: list[str] = []

    async def work(user_id: str) -> str:
        await asyncio.sleep(0 if user_id == "fast" else 30)
        finished.append(user_id)
        return user_id

    async with aclosing(each_user(["fast", "slow-1", "slow-2", "never"], work, at_once=3)) as outcomes:
        async for user_id, _ in outcomes:
            assert user_id == "fast"
            break  # the store failed: the caller stops here
    await asyncio.sleep(0)
    assert finished == ["fast"]
    assert all(task.done() for task in asyncio.all_tasks() if task is not asyncio.current_task())
