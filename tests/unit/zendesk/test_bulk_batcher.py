"""The batcher: a batch goes out at 100 items, at `max_bytes` of JSON, or after the linger."""

from __future__ import annotations

import asyncio

import orjson

from stream.zendesk.bulk import MAX_ITEMS, _Batcher, _Item, json_size_bound
from stream.zendesk.classify import Ok, Result


def batches_of(sizes: list[int], *, max_bytes: int) -> list[list[int]]:
    """Submit payloads of these sizes at once; the batches they went out in, as lists of sizes."""
    sent: list[list[int]] = []

    async def send(batch: list[_Item[int]]) -> None:
        sent.append([item.payload for item in batch])
        for item in batch:
            item.answer.set_result(Ok(200, {}))

    async def main() -> list[Result]:
        batcher: _Batcher[int] = _Batcher(
            linger_s=0.01, send=send, size_of=lambda size: size, max_bytes=max_bytes
        )
        return await asyncio.gather(*(batcher.submit(size) for size in sizes))

    answers = asyncio.run(main())
    assert all(isinstance(answer, Ok) for answer in answers)
    return sent


def test_a_full_batch_goes_out_at_100_items_and_the_rest_after_the_linger() -> None:
    assert [len(batch) for batch in batches_of([1] * 250, max_bytes=10**9)] == [MAX_ITEMS, MAX_ITEMS, 50]


def test_a_batch_closes_before_an_item_that_would_take_it_over_the_byte_limit() -> None:
    assert batches_of([400, 400, 400, 100, 1000, 5], max_bytes=1000) == [[400, 400], [400, 100], [1000], [5]]


def test_an_item_larger_than_the_limit_goes_alone() -> None:
    assert batches_of([10, 5000, 10], max_bytes=1000) == [[10], [5000], [10]]


def test_the_size_bound_never_underestimates_json() -> None:
    for value in [
        {"name": "A", "email": "a@example.com", "user_fields": {"plan": "pro", "n": 3, "ok": True}},
        {"name": "\x00" * 300},
        {"name": "é" * 5000, "tags": ["a", "b"]},
        {"user_fields": {"blob": "x" * 100_000}},
    ]:
        assert json_size_bound(value) >= len(orjson.dumps(value))
