"""Generated ids: valid wherever an id is accepted, and never the same twice."""

from __future__ import annotations

import re

from host.core.ids import instance_id, new_instance_id, new_run_id


def test_generated_instance_ids_are_valid_distinct_and_random_looking() -> None:
    ids = [new_instance_id() for _ in range(10_000)]  # many pages of entropy
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)
    assert ids == [instance_id(value) for value in ids]
    # 128 random bits each: every hex digit shows up in every position.
    assert all(len({value[i] for value in ids}) == 16 for i in range(32))


def test_run_ids_never_repeat() -> None:
    runs = [new_run_id() for _ in range(10_000)]
    assert len(set(runs)) == len(runs)


def test_a_forked_child_never_repeats_its_parents_ids() -> None:
    import os

    new_instance_id(), new_run_id()  # the parent has a page of entropy in hand
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child reports through the pipe
        os.write(write, f"{new_instance_id()} {new_run_id()}".encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    child_instance, child_run = os.read(read, 200).decode().split()
    os.close(read)
    assert child_instance != new_instance_id()
    assert child_run[:16] != new_run_id()[:16]
