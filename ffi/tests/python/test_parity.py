"""What an app needs beside sending, through the real library (issue 15, finding 6): safety
numbers and verification while the node runs, a conversation list with unread counts and last
messages, reject/block/delete contacts, leave/rename groups, a QR code as data, the log routed
to the app, a network-changed hint and a one-off catch-up for background work."""
import asyncio
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.environ["WEFT_BINDINGS_DIR"])

import weft_ffi  # noqa: E402
from pair import account_of, contacts_by_bundle, contacts_on_loopback, conversation_of, loopback  # noqa: E402


async def carry(source, target):
    return await target.import_bundle(await source.export_bundle())


async def node(root, name, seed):
    return await weft_ffi.open_node(f"{root}/{name}", bytes([seed] * 32), name)


async def contacts_and_verification(root):
    alice, bob = await node(root, "alice", 1), await node(root, "bob", 2)
    await contacts_by_bundle(alice, bob)
    bob_id = await account_of(alice, "bob")
    # Before, `safety_number_with` needed the account closed: not while the node runs.
    number = await alice.safety_number(bob_id)
    assert number == await bob.safety_number(await account_of(bob, "alice"))
    assert (await alice.verify_contact(bob_id)).verified
    try:
        await alice.safety_number("bob")
        raise AssertionError("a name was taken as an id")
    except weft_ffi.WeftError.InvalidInput:
        pass

    # The conversation list: unread counts and the last message, newest first.
    await bob.send(await conversation_of(bob, "alice"), "one")
    await bob.send(await conversation_of(bob, "alice"), "two")
    await carry(bob, alice)
    group = await alice.create_group("trip")
    listed = await alice.conversations()
    # The group made last comes first.
    assert [c.name for c in listed] == ["trip", "bob"], [c.name for c in listed]
    assert listed[1].unread == 2 and listed[1].last_message.body == "two"
    assert listed[0].last_message.kind == weft_ffi.MessageKind.CREATED and listed[0].unread == 0
    assert await alice.mark_read(listed[1].id) == 2
    assert [c.unread for c in await alice.conversations()] == [0, 0]

    # Blocked: bob's messages are not shown and nothing goes to him; unblocked: it does.
    await alice.block(bob_id)
    assert [c.blocked for c in await alice.contacts()] == [True]
    await bob.send(await conversation_of(bob, "alice"), "while blocked")
    await carry(bob, alice)
    history = await alice.history(await conversation_of(alice, "bob"), None, 50)
    assert "while blocked" not in [m.body for m in history]
    try:
        await alice.send(await conversation_of(alice, "bob"), "hi")
        raise AssertionError("a blocked contact was written to")
    except weft_ffi.WeftError.InvalidInput as e:
        assert "blocked" in str(e), e
    await alice.unblock(bob_id)
    await alice.send(await conversation_of(alice, "bob"), "hi again")

    # Rename and leave: a group of three.
    carol = await node(root, "carol", 3)
    await contacts_by_bundle(alice, carol)
    await alice.invite(group.id, bob_id)
    await alice.invite(group.id, await account_of(alice, "carol"))
    await carry(alice, bob)
    await carry(alice, carol)
    await carry(bob, alice)
    await carry(carol, alice)
    await alice.rename_group(group.id, "voyage")
    await carry(alice, bob)
    assert any(c.name == "voyage" for c in await bob.conversations())
    try:
        await bob.rename_group(group.id, "mine")
        raise AssertionError("a member who is not an admin renamed the group")
    except weft_ffi.WeftError.InvalidInput:
        pass
    await carol.leave_group(group.id)
    assert not [c for c in await carol.conversations() if c.id == group.id][0].active
    await carry(carol, alice)
    assert len(await alice.members(group.id)) == 2
    kinds = [m.kind for m in await alice.history(group.id, None, 50)]
    assert weft_ffi.MessageKind.LEFT in kinds and weft_ffi.MessageKind.RENAMED in kinds, kinds

    # A stranger's request rejected: gone, and not shown again when it comes again.
    mallory = await node(root, "mallory", 9)
    await mallory.add_contact(await alice.link(), None)
    await carry(mallory, alice)
    mallory_id = await account_of(alice, "mallory")
    await alice.reject_contact(mallory_id)
    await carry(mallory, alice)
    assert "mallory" not in [c.name for c in await alice.contacts()]
    # Deleting a contact takes the 1:1 conversation, not the group.
    await alice.delete_contact(await account_of(alice, "carol"))
    names = [c.name for c in await alice.conversations()]
    assert "carol" not in names and "voyage" in names, names
    for n in (alice, bob, carol, mallory):
        n.shutdown()


async def qr_code_as_data(root):
    alice = await node(root, "qr", 4)
    identity = await alice.identity()
    qr = identity.qr
    assert qr.payload.lower() == identity.link.lower()
    assert qr.width >= 21 and len(qr.modules) == qr.width * qr.width
    assert any(qr.modules) and not all(qr.modules)
    assert qr.svg.startswith("<?xml") and "<svg" in qr.svg
    # The finder pattern: the top-left corner is dark, as in every QR code.
    assert qr.modules[0] and qr.modules[6] and qr.modules[6 * qr.width]
    alice.shutdown()


class Log(weft_ffi.LogListener):
    def __init__(self):
        self.records = []
        self.lock = threading.Lock()

    def on_log(self, record):
        with self.lock:
            self.records.append(record)


async def log_network_hint_and_one_catch_up(root):
    log = Log()
    weft_ffi.set_log_listener(log, weft_ffi.LogLevel.DEBUG)
    alice, bob = await node(root, "a2", 5), await node(root, "b2", 6)
    try:
        await bob.sync_once(1000)
        raise AssertionError("a catch-up ran with no network")
    except weft_ffi.WeftError.Network:
        pass
    await contacts_on_loopback(alice, bob)
    bob_chat = await conversation_of(alice, "b2")
    # The network changed under both: connections are dropped and made again, and what is
    # sent after arrives.
    alice.network_changed()
    bob.network_changed()
    for i in range(3):
        await alice.send(bob_chat, f"after the change {i}")
    report = await bob.sync_once(30_000)
    assert report.peers >= 1, report
    for _ in range(300):
        bodies = [m.body for m in await bob.history(await conversation_of(bob, "a2"), None, 20)]
        if "after the change 2" in bodies:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"nothing arrived after the network changed: {bodies}")
    alice.shutdown()
    bob.shutdown()
    weft_ffi.clear_log_listener()
    count = len(log.records)
    with log.lock:
        targets = {r.target for r in log.records}
        changed = [r for r in log.records if "network changed" in r.message]
    assert any(t.startswith("weft_core") for t in targets), targets
    assert changed, "the network-changed hint left no trace in the log"
    assert all(r.level in (weft_ffi.LogLevel.DEBUG, weft_ffi.LogLevel.INFO, weft_ffi.LogLevel.WARN,
                           weft_ffi.LogLevel.ERROR) for r in log.records)
    await asyncio.sleep(0.2)
    assert len(log.records) == count, "the log listener was called after it was cleared"


async def main():
    with tempfile.TemporaryDirectory() as root:
        await contacts_and_verification(root)
        await qr_code_as_data(root)
        await log_network_hint_and_one_catch_up(root)
    print("python parity: 3 passed, 0 failed")


if __name__ == "__main__":
    asyncio.run(main())
