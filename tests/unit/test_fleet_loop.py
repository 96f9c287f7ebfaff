"""The triggerer's loop is never held long by the fleet's async checks (issue 10, goal 5).

``triggers.fleet.Batcher`` answers every waiting check of one server with one query; the answers must wake
the waiting checks a slice at a time, one loop turn each, so the loop's other work (Airflow's heartbeat, the
other triggers) runs in between. The first use of the fleet's state freezes the objects alive then (the
process's imports) out of the garbage collector's full passes. Nothing is stood in: the batcher runs on a
real event loop with a fetch function that answers at once, as a server query would.
"""

from __future__ import annotations

import asyncio
import gc

from triggers import fleet


def test_a_batchs_answers_wake_their_checks_a_slice_per_loop_turn():
    waits = 4 * fleet.WAKE_SLICE + 3

    async def scenario() -> tuple[list[int], list]:
        async def fetch(keys: list) -> dict:
            await asyncio.sleep(0.01)  # the query: every check below is waiting by then
            return {key: f"answer {key}" for key in keys}

        batcher = fleet.Batcher(fetch)
        done_per_turn: list[int] = []
        checks = [asyncio.create_task(batcher.get(i)) for i in range(waits)]

        async def turns() -> None:  # one entry per loop turn: how many checks have their answer
            while not all(check.done() for check in checks):
                done_per_turn.append(sum(check.done() for check in checks))
                await asyncio.sleep(0)

        await asyncio.gather(turns(), *checks)
        return done_per_turn, [check.result() for check in checks]

    done_per_turn, answers = asyncio.run(scenario())
    assert answers == [f"answer {i}" for i in range(waits)]
    woken = [b - a for a, b in zip(done_per_turn, done_per_turn[1:], strict=False)]
    assert max(woken) <= fleet.WAKE_SLICE, woken
    assert sum(1 for n in woken if n) >= waits // fleet.WAKE_SLICE, woken


def test_the_first_use_of_the_fleets_state_freezes_what_is_alive_out_of_the_collectors_passes():
    async def first_use() -> None:
        fleet._state()
        await fleet.close_all()

    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    fleet._STATES.clear()
    try:
        asyncio.run(first_use())
        assert gc.get_freeze_count() > 1000
    finally:
        gc.unfreeze()
