"""Replies, reactions, edits and deletes through the real library (issue 19): carried by
bundles, and over a Bluetooth mesh whose radio is Python's; each member sees each change, only
the sender edits or deletes, and a change comes as an event that names it."""
import asyncio
import os
import sys
import tempfile

sys.path.insert(0, os.environ["WEFT_BINDINGS_DIR"])

import weft_ffi  # noqa: E402
from pair import contacts_by_bundle, contacts_on_loopback, conversation_of, radios_in_one_room, until  # noqa: E402


async def carry(source, *targets):
    bundle = await source.export_bundle()
    for target in targets:
        await target.import_bundle(bundle)


async def shown(node, conversation, message_id):
    for m in await node.history(conversation, None, 100):
        if m.id == message_id:
            return m
    raise AssertionError(f"{message_id} is not in the history")


class Changes(weft_ffi.EventListener):
    """The ids of the changes that events said changed a message."""

    def __init__(self):
        self.changed_by = []

    def on_event(self, event):
        if isinstance(event, weft_ffi.Event.MESSAGE_RECEIVED) and event.message.changed_by is not None:
            self.changed_by.append(event.message.changed_by)


async def by_bundle(root):
    alice = await weft_ffi.open_node(root + "/alice", bytes([1] * 32), "alice")
    bob = await weft_ffi.open_node(root + "/bob", bytes([2] * 32), "bob")
    await contacts_by_bundle(alice, bob)
    with_bob, with_alice = await conversation_of(alice, "bob"), await conversation_of(bob, "alice")
    asked = await bob.send(with_alice, "dinner at six?")
    await carry(bob, alice)

    reply = await alice.reply(with_bob, asked.id, "yes, the usual place")
    assert reply.reply_to == asked.id and reply.kind == weft_ffi.MessageKind.TEXT, reply
    reacted = await alice.react(with_bob, asked.id, "\U0001f44d")
    assert reacted.changed_by is not None and [(r.emoji, r.count, r.mine) for r in reacted.reactions] == [
        ("\U0001f44d", 1, True)
    ], reacted.reactions
    await carry(alice, bob)
    assert (await shown(bob, with_alice, reply.id)).reply_to == asked.id
    assert [(r.emoji, r.count, r.mine) for r in (await shown(bob, with_alice, asked.id)).reactions] == [
        ("\U0001f44d", 1, False)
    ]

    await bob.edit(with_alice, asked.id, "dinner at seven?")
    await carry(bob, alice)
    edited = await shown(alice, with_bob, asked.id)
    assert (edited.body, edited.edited) == ("dinner at seven?", True), edited
    for refused in (alice.edit(with_bob, asked.id, "cancelled"), alice.delete_message(with_bob, asked.id),
                    alice.react(with_bob, asked.id, "no"), alice.react(with_bob, "not an id", "\U0001f44d")):
        try:
            await refused
            raise AssertionError("refused what is not ours to do")
        except weft_ffi.WeftError:
            pass

    await bob.delete_message(with_alice, asked.id)
    await carry(bob, alice)
    gone = await shown(alice, with_bob, asked.id)
    assert gone.deleted and gone.body == "" and gone.reactions == [], gone

    # Disappearing messages: any member sets the timer for both; the other is shown who did.
    line = await alice.set_disappearing(with_bob, 3_600_000)
    assert line.kind == weft_ffi.MessageKind.TIMER and line.body == "3600000", line
    await carry(alice, bob)
    assert await bob.disappearing(with_alice) == 3_600_000
    told = [m for m in await bob.history(with_alice, None, 100) if m.kind == weft_ffi.MessageKind.TIMER]
    assert [(m.sender, m.body) for m in told] == [("alice", "3600000")], told
    try:
        await bob.set_disappearing(with_alice, 1_000)
        raise AssertionError("a timer of a second was taken")
    except weft_ffi.WeftError:
        pass
    await bob.set_disappearing(with_alice, None)
    await carry(bob, alice)
    assert await alice.disappearing(with_bob) is None
    for node in (alice, bob):
        node.shutdown()


async def over_the_mesh(root):
    alice = await weft_ffi.open_node(root + "/alice2", bytes([3] * 32), "alice")
    bob = await weft_ffi.open_node(root + "/bob2", bytes([4] * 32), "bob")
    await contacts_by_bundle(alice, bob)
    with_bob, with_alice = await conversation_of(alice, "bob"), await conversation_of(bob, "alice")
    heard = Changes()
    subscription = bob.subscribe(heard)
    radios_in_one_room(alice, bob)
    asked = await bob.send(with_alice, "bring the banner?")

    async def alice_has_it():
        return any(m.id == asked.id for m in await alice.history(with_bob, None, 100))

    await until(alice_has_it, "the message crossing the radio")
    reacted = await alice.react(with_bob, asked.id, "\U0001f389")

    async def bob_sees_it():
        m = await shown(bob, with_alice, asked.id)
        return [(r.emoji, r.count) for r in m.reactions] == [("\U0001f389", 1)]

    await until(bob_sees_it, "the reaction crossing the radio")
    await until(lambda: asyncio.sleep(0, result=reacted.changed_by in heard.changed_by), "the change's event")
    subscription.cancel()
    await bob.delete_message(with_alice, asked.id)

    async def alice_sees_it_gone():
        return (await shown(alice, with_bob, asked.id)).deleted

    await until(alice_sees_it_gone, "the delete crossing the radio")
    for node in (alice, bob):
        node.shutdown()


async def over_libp2p(root):
    alice = await weft_ffi.open_node(root + "/alice3", bytes([5] * 32), "alice")
    bob = await weft_ffi.open_node(root + "/bob3", bytes([6] * 32), "bob")
    await contacts_on_loopback(alice, bob)
    with_alice = await conversation_of(bob, "alice")

    async def with_bob():
        return await conversation_of(alice, "bob")

    asked = await bob.send(with_alice, "which gate?")

    async def alice_has_it():
        return any(m.id == asked.id for m in await alice.history(await with_bob(), None, 100))

    await until(alice_has_it, "the message crossing loopback")
    reply = await alice.reply(await with_bob(), asked.id, "the north one")
    await alice.react(await with_bob(), asked.id, "\U0001f44d")

    async def bob_sees_both():
        history = await bob.history(with_alice, None, 100)
        replied = any(m.id == reply.id and m.reply_to == asked.id for m in history)
        reacted = any(m.id == asked.id and len(m.reactions) == 1 for m in history)
        return replied and reacted

    await until(bob_sees_both, "the reply and the reaction crossing loopback", seconds=60)
    await bob.edit(with_alice, asked.id, "which gate, north or south?")

    async def alice_sees_the_edit():
        return (await shown(alice, await with_bob(), asked.id)).edited

    await until(alice_sees_the_edit, "the edit crossing loopback", seconds=60)
    for node in (alice, bob):
        node.shutdown()


async def panic_wipe(root):
    """The panic wipe: the open node erases its home and shuts down; nothing left opens with
    the same key; a home no node has open is wiped too."""
    home = root + "/wiped"
    node = await weft_ffi.open_node(home, bytes([7] * 32), "alice")
    wiped = node.wipe()
    assert wiped.files >= 1 and wiped.elapsed_ms < 1000, (wiped.files, wiped.elapsed_ms)
    assert not os.path.exists(home + "/weft.db")
    try:
        await node.conversations()
        raise AssertionError("a wiped node still answers")
    except weft_ffi.WeftError.Closed:
        pass
    # Opened again with the same key, it is a new, empty account: nothing of the old one.
    again = await weft_ffi.open_node(home, bytes([7] * 32), "someone")
    assert (await again.identity()).name == "someone"
    again.shutdown()
    assert weft_ffi.wipe_home(home).files >= 1
    assert weft_ffi.wipe_home(home).files == 0


def main():
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(by_bundle(root))
        asyncio.run(over_the_mesh(root))
        asyncio.run(over_libp2p(root))
        asyncio.run(panic_wipe(root))
    print("conversation: 4 passed")


if __name__ == "__main__":
    main()
