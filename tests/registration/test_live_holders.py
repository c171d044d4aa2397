"""The in-memory view of who holds live registrations, which a batch of decisions keeps up to date."""

from __future__ import annotations

from services.registration.domain import LiveHolders


def test_added_registrations_count_for_later_requests_of_the_batch() -> None:
    holders = LiveHolders(loaded_emails={("o1", "a@x.de")}, loaded_companies={("o1", "acme|99867")})
    assert holders.of("o1", "a@x.de", "acme|99867") == (False, 0)
    holders.add("o1", "a@x.de", "acme|99867")
    holders.add("o1", "b@x.de", "acme|99867")
    assert holders.of("o1", "a@x.de", "acme|99867") == (True, 2)
    assert holders.of("o2", "a@x.de", "acme|99867") == (False, 0)  # another offering


def test_merge_keeps_what_this_transaction_added_and_takes_only_new_keys() -> None:
    holders = LiveHolders(loaded_emails={("o1", "a@x.de")}, loaded_companies={("o1", "acme|99867")})
    holders.add("o1", "a@x.de", "acme|99867")
    loaded = LiveHolders(
        emails={("o1", "c@x.de")},
        companies={("o1", "acme|99867"): 0, ("o1", "beta|99084"): 3},
        loaded_emails={("o1", "a@x.de"), ("o1", "c@x.de")},
        loaded_companies={("o1", "acme|99867"), ("o1", "beta|99084")},
    )
    assert not holders.knows("o1", "c@x.de", "beta|99084")
    holders.merge(loaded)
    assert holders.knows("o1", "c@x.de", "beta|99084")
    # The database's stale zero for acme does not undo the registration added in this transaction.
    assert holders.of("o1", "a@x.de", "acme|99867") == (True, 1)
    assert holders.of("o1", "c@x.de", "beta|99084") == (True, 3)
