"""The nearby channel through the real library (issue 19): two strangers (not contacts) whose
radios meet read each other's posts as events, under a session key that is not their account;
a blocked sender is not shown; a new session is a new key; with no radio, a post is refused."""
import asyncio
import os
import sys
import tempfile

sys.path.insert(0, os.environ["WEFT_BINDINGS_DIR"])

import weft_ffi  # noqa: E402
from pair import radios_in_one_room, until  # noqa: E402


class Heard(weft_ffi.EventListener):
    def __init__(self):
        self.messages = []

    def on_event(self, event):
        if isinstance(event, weft_ffi.Event.NEARBY):
            self.messages.append(event.message)


async def strangers(root):
    alice = await weft_ffi.open_node(root + "/alice", bytes([1] * 32), "alice")
    bob = await weft_ffi.open_node(root + "/bob", bytes([2] * 32), "bob")
    try:
        alice.nearby_post("nobody hears this")
        raise AssertionError("a post with no radio was taken")
    except weft_ffi.WeftError:
        pass
    heard_by_bob, heard_by_alice = Heard(), Heard()
    subscriptions = [bob.subscribe(heard_by_bob), alice.subscribe(heard_by_alice)]
    radios_in_one_room(alice, bob)
    # A post goes to the neighbours there are when it is sent: wait for the link.
    for node in (alice, bob):
        for _ in range(200):
            if (await node.status()).mesh_links >= 1:
                break
            await asyncio.sleep(0.05)
    alice_key = alice.nearby_session("alice")
    posted = alice.nearby_post("free water at the north gate")
    assert posted.sender == alice_key and posted.hops == 0, posted
    await until(lambda: heard_by_bob.messages, "alice's post crossing the radio")
    got = heard_by_bob.messages[0]
    assert (got.text, got.sender, got.hops) == ("free water at the north gate", alice_key, 0), got
    assert got.name.startswith("alice") and alice_key[:8] in got.name, got.name
    # Nothing of it is alice's account: not her id, not a contact of bob's.
    me = await alice.identity()
    assert alice_key != me.account and me.account not in got.name, (alice_key, me.account)
    assert await bob.contacts() == []
    assert [m.text for m in bob.nearby_recent()] == ["free water at the north gate"]

    # Bob blocks that session; alice's next session is a new key, which he does hear.
    bob.nearby_block(alice_key)
    bob.nearby_session("bob")
    bob.nearby_post("thanks")
    await until(lambda: heard_by_alice.messages, "bob's post crossing the radio")
    new_key = alice.nearby_session("alice")
    assert new_key != alice_key
    alice.nearby_post("and shade by the stage")
    await until(lambda: len(heard_by_bob.messages) == 2, "the new session's post")
    assert heard_by_bob.messages[1].sender == new_key
    try:
        bob.nearby_block("not a key")
        raise AssertionError("a bad key was taken")
    except weft_ffi.WeftError.InvalidInput:
        pass
    for s in subscriptions:
        s.cancel()
    for node in (alice, bob):
        node.shutdown()


def main():
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(strangers(root))
    print("nearby: 1 passed")


if __name__ == "__main__":
    main()
