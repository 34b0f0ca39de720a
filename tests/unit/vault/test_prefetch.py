"""Looking a batch of messages up at once (``Vault.prefetch``) gives the answers the
one-at-a-time look-ups give: archived, pending in this commit, new, added twice in a
batch; after a commit the cache answers again (what was new is archived now)."""

from __future__ import annotations

from popvault.vault.ids import prepare_message
from popvault.vault.vault import SourceInfo
from tests.support.vaults import memory_vault, text_message


def test_prefetched_answers_are_the_look_ups() -> None:
    _, v = memory_vault()
    old = [text_message(n) for n in range(3)]
    for n, data in enumerate(old):
        v.add_message(data, SourceInfo("a", f"old{n}"))
    v.commit()
    pending = text_message(10)
    v.add_message(pending, SourceInfo("a", "p"))
    new = [text_message(n) for n in range(20, 24)]
    batch = [*old, pending, *new, new[0]]  # the last one twice in the batch
    ids = [v.keyed_id(d) for d in batch]
    looked_up = [v.has_message(i) for i in ids]
    assert looked_up == [True] * 4 + [False] * 5

    queries: list[str] = []
    v.cache.db.set_trace_callback(queries.append)
    v.prefetch(ids)
    assert len(queries) == 1  # one query for the batch
    assert [v.has_message(i) for i in ids] == looked_up
    results = [
        v.add_prepared(d, prepare_message(v.helper_key(), d), SourceInfo("a", f"b{k}"))
        for k, d in enumerate(batch)
    ]
    assert [r.new for r in results] == [False] * 4 + [True] * 4 + [False]
    assert not [q for q in queries[1:] if "FROM messages WHERE id=?" in q]  # none alone
    v.cache.db.set_trace_callback(None)

    v.commit()
    assert all(v.has_message(i) for i in ids)  # archived now: the cache answers
    v.prefetch(ids)
    again = v.add_prepared(new[1], prepare_message(v.helper_key(), new[1]), SourceInfo("a", "x"))
    assert not again.new
    v.close()
