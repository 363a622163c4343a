"""The demo history's script: a pure function of its seed, every movement kind in it."""

from __future__ import annotations

from service.demo_history import ACCOUNTS, HISTORY_DAYS, HISTORY_PREFIX, Action, history_script


def test_the_same_seed_plays_the_same_year() -> None:
    assert history_script(7) == history_script(7)
    assert history_script(7) != history_script(8)


def test_every_account_opens_before_anything_else_happens_to_it() -> None:
    events = history_script()
    assert events == sorted(events, key=lambda e: (e.day, e.account_id))
    first: dict[str, Action] = {}
    for event in events:
        first.setdefault(event.account_id, event.action)
        assert event.account_id.startswith(HISTORY_PREFIX)
        assert 0 <= event.day < HISTORY_DAYS
    assert len(first) == ACCOUNTS and set(first.values()) == {Action.open}


def test_the_script_holds_every_kind_of_story() -> None:
    events = history_script()
    assert {e.action for e in events} == set(Action)
    browsing = [e for e in events if e.action is Action.browse]
    # Customers see offers more often than they take them.
    assert sum(e.args["seen"] for e in browsing) > sum(e.args["accept"] for e in browsing) > 0
    # A reactivation follows a cancellation of the same account.
    for event in events:
        if event.action is Action.reactivate:
            earlier = [e for e in events if e.account_id == event.account_id and e.day < event.day]
            assert earlier[-1].action is Action.cancel
