"""Files through the real library (issue 19): by bundle, over a Bluetooth mesh whose radio is
Python's (a file within the mesh's 256 KiB policy), and over libp2p on loopback; progress comes
as events, the file comes back whole and checked, and saves to a path."""
import asyncio
import os
import sys
import tempfile

sys.path.insert(0, os.environ["WEFT_BINDINGS_DIR"])

import weft_ffi  # noqa: E402
from pair import contacts_by_bundle, contacts_on_loopback, conversation_of, radios_in_one_room, until  # noqa: E402


def photo(length):
    return bytes((i * 31 + i // 251) % 256 for i in range(length))


async def whole(node, message_id):
    """Whether the file of `message_id` is whole on `node` (false while its message has not come)."""
    try:
        return await node.attachment_bytes(message_id) is not None
    except weft_ffi.WeftError.NotFound:
        return False


class Progress(weft_ffi.EventListener):
    """The (have, total) steps events gave, per message."""

    def __init__(self):
        self.steps = {}

    def on_event(self, event):
        if isinstance(event, weft_ffi.Event.ATTACHMENT_PROGRESS):
            self.steps.setdefault(event.message_id, []).append((event.have, event.total))


async def by_bundle(root):
    alice = await weft_ffi.open_node(root + "/alice", bytes([1] * 32), "alice")
    bob = await weft_ffi.open_node(root + "/bob", bytes([2] * 32), "bob")
    await contacts_by_bundle(alice, bob)
    with_alice = await conversation_of(bob, "alice")
    data = photo(300_000)
    sent = await bob.send_file_bytes(with_alice, "map.jpg", "image/jpeg", data, "the gates")
    assert sent.body == "the gates" and sent.attachment.name == "map.jpg", sent
    assert sent.attachment.have == sent.attachment.total, sent.attachment
    await alice.import_bundle(await bob.export_bundle())
    shown = [m for m in await alice.history(await conversation_of(alice, "bob"), None, 100) if m.id == sent.id][0]
    assert shown.attachment.size == 300_000 and shown.attachment.have == shown.attachment.total, shown.attachment
    assert await alice.attachment_bytes(sent.id) == data
    path = root + "/saved.jpg"
    assert await alice.save_attachment(sent.id, path)
    with open(path, "rb") as f:
        assert f.read() == data
    # A file on disk, sent by path: its name is the path's last part.
    source = root + "/notes.txt"
    with open(source, "wb") as f:
        f.write(b"meet at the north gate\n" * 1000)
    by_path = await bob.send_file(with_alice, source, "text/plain", "")
    assert by_path.attachment.name == "notes.txt" and by_path.attachment.size == 23_000, by_path.attachment
    try:
        await bob.send_file(with_alice, root + "/missing.bin", "", "")
        raise AssertionError("a missing file was sent")
    except weft_ffi.WeftError:
        pass
    for node in (alice, bob):
        node.shutdown()


async def over_the_mesh(root):
    alice = await weft_ffi.open_node(root + "/alice2", bytes([3] * 32), "alice")
    bob = await weft_ffi.open_node(root + "/bob2", bytes([4] * 32), "bob")
    await contacts_by_bundle(alice, bob)
    with_alice = await conversation_of(bob, "alice")
    heard = Progress()
    subscription = alice.subscribe(heard)
    radios_in_one_room(alice, bob)
    data = photo(150_000)
    sent = await bob.send_file_bytes(with_alice, "crowd.jpg", "image/jpeg", data, "")

    await until(lambda: whole(alice, sent.id), "the file crossing the radio")
    assert await alice.attachment_bytes(sent.id) == data
    await until(lambda: asyncio.sleep(0, result=sent.id in heard.steps), "the progress events")
    steps = heard.steps[sent.id]
    assert steps[-1][0] == steps[-1][1] and [h for h, _ in steps] == sorted(h for h, _ in steps), steps
    subscription.cancel()
    for node in (alice, bob):
        node.shutdown()


async def over_libp2p(root):
    alice = await weft_ffi.open_node(root + "/alice3", bytes([5] * 32), "alice")
    bob = await weft_ffi.open_node(root + "/bob3", bytes([6] * 32), "bob")
    await contacts_on_loopback(alice, bob)
    with_alice = await conversation_of(bob, "alice")
    data = photo(1_200_000)
    sent = await bob.send_file_bytes(with_alice, "film.mp4", "video/mp4", data, "the stage")

    await until(lambda: whole(alice, sent.id), "the file crossing loopback", seconds=120)
    assert await alice.attachment_bytes(sent.id) == data
    info = await alice.fetch_attachment(sent.id)
    assert (info.have, info.fetching, info.mime) == (info.total, False, "video/mp4"), info
    for node in (alice, bob):
        node.shutdown()


def main():
    with tempfile.TemporaryDirectory() as root:
        asyncio.run(by_bundle(root))
        asyncio.run(over_the_mesh(root))
        asyncio.run(over_libp2p(root))
    print("attachments: 3 passed")


if __name__ == "__main__":
    main()
