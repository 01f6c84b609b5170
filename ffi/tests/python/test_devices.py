"""One account on two devices through the real library (issue 16): the phone links a laptop
(the app carries the request and the grant), both write as alice, bob sees one alice; the phone
revokes the laptop, which then reads nothing new and is refused."""
import asyncio
import os
import sys
import tempfile

sys.path.insert(0, os.environ["WEFT_BINDINGS_DIR"])

import weft_ffi  # noqa: E402
from pair import contacts_by_bundle, conversation_of, loopback, radios_in_one_room  # noqa: E402


async def carry(source, *targets):
    bundle = await source.export_bundle()
    for target in targets:
        await target.import_bundle(bundle)


async def bodies(node, name):
    return [m.body for m in await node.history(await conversation_of(node, name), None, 100)]


class Revocations(weft_ffi.EventListener):
    """Counts the events that say this device was revoked."""

    def __init__(self):
        self.count = 0

    def on_event(self, event):
        if isinstance(event, weft_ffi.Event.THIS_DEVICE_REVOKED):
            self.count += 1


async def link_write_and_revoke(root):
    alice = await weft_ffi.open_node(root + "/alice", bytes([1] * 32), "alice")
    bob = await weft_ffi.open_node(root + "/bob", bytes([2] * 32), "bob")
    await contacts_by_bundle(alice, bob)
    await alice.send(await conversation_of(alice, "bob"), "before the laptop")

    link = await alice.link_device()
    join = weft_ffi.WeftJoin(link, "laptop")
    asked = await alice.open_link_request(join.request())
    assert asked.name == "laptop" and asked.code == join.code(), (asked.code, join.code())
    # A wrong code grants nothing and ends the link.
    try:
        await alice.grant_device(join.request(), (asked.code_value + 1) % 1_000_000, False)
        raise AssertionError("a wrong code was granted")
    except weft_ffi.WeftError.InvalidInput:
        pass
    link = await alice.link_device()
    join = weft_ffi.WeftJoin(link, "laptop")
    asked = await alice.open_link_request(join.request())
    grant = await alice.grant_device(join.request(), asked.code_value, True)
    laptop = await join.finish(root + "/laptop", bytes([3] * 32), grant)
    assert (await laptop.identity()).link == (await alice.identity()).link
    assert "before the laptop" in await bodies(laptop, "bob"), "the history came with the grant"
    devices = await alice.devices()
    assert [d.name for d in devices] == ["this device", "laptop"] and devices[0].primary, devices

    await laptop.send(await conversation_of(laptop, "bob"), "from the laptop")
    await alice.send(await conversation_of(alice, "bob"), "from the phone")
    for _ in range(2):
        await carry(laptop, bob, alice)
        await carry(alice, bob, laptop)
        await carry(bob, alice, laptop)
    on_bob = await bob.history(await conversation_of(bob, "alice"), None, 100)
    texts = {(m.sender, m.body) for m in on_bob if m.kind == weft_ffi.MessageKind.TEXT}
    assert {("alice", "from the laptop"), ("alice", "from the phone")} <= texts, texts
    await bob.send(await conversation_of(bob, "alice"), "hello both")
    await carry(bob, alice, laptop)
    assert "hello both" in await bodies(laptop, "bob")

    old_link = await alice.link()
    revoked = await alice.revoke_device(devices[1].device)
    assert revoked.name == "laptop"
    # The laptop held the keys behind the contact link: the revocation replaced it.
    assert await alice.link() != old_link
    # And on demand (a link that leaked): the fingerprint stays.
    leaked = await alice.link()
    fresh = await alice.replace_link()
    assert fresh == await alice.link() != leaked
    told = Revocations()
    subscription = laptop.subscribe(told)
    await carry(alice, bob, laptop)
    for _ in range(100):
        if told.count:
            break
        await asyncio.sleep(0.05)
    assert told.count == 1, "the laptop is told once that it was revoked"
    subscription.cancel()
    await bob.send(await conversation_of(bob, "alice"), "after the revocation")
    await carry(bob, alice, laptop)
    assert "after the revocation" in await bodies(alice, "bob")
    assert "after the revocation" not in await bodies(laptop, "bob")
    try:
        await laptop.send(await conversation_of(laptop, "bob"), "still here?")
        raise AssertionError("a revoked device sent")
    except weft_ffi.WeftError.Revoked as e:
        assert "revoked" in str(e), e
    for node in (alice, bob, laptop):
        node.shutdown()


async def grant_when_asked(alice, join):
    """Waits for the laptop's request on alice's node and for alice's answer on the laptop (over
    the network the code covers it), checks the two codes and grants it."""
    for _ in range(600):
        arrived = await alice.arrived_link_requests()
        shown = join.network_code()
        if arrived and shown is not None:
            assert [a.code for a in arrived] == [shown], (arrived, shown)
            assert shown != join.code(), "the network's code covers alice's nonce"
            return await alice.grant_arrived_device(arrived[0].code_value, False)
        await asyncio.sleep(0.1)
    raise AssertionError("the laptop's request, or alice's answer, never arrived")


async def finish_and_check(alice, join, home, key, grant):
    laptop = await join.finish(home, key, grant)
    assert (await laptop.identity()).link == (await alice.identity()).link
    for node in (alice, laptop):
        node.shutdown()


async def link_over_the_network(root):
    """The request and the grant cross loopback libp2p: nothing is carried by the app."""
    alice = await weft_ffi.open_node(root + "/alice2", bytes([4] * 32), "alice")
    addrs = await alice.start_network(loopback())
    join = weft_ffi.WeftJoin(await alice.link_device(), "laptop")
    granted, grant = await asyncio.gather(grant_when_asked(alice, join), join.grant_over_network(loopback(addrs[:1])))
    assert granted.name == "laptop", granted
    await finish_and_check(alice, join, root + "/laptop2", bytes([5] * 32), grant)


async def link_over_a_radio(root):
    """No network at all: the request and the grant cross an app-driven radio."""
    alice = await weft_ffi.open_node(root + "/alice3", bytes([6] * 32), "alice")
    join = weft_ffi.WeftJoin(await alice.link_device(), "laptop")
    radios_in_one_room(alice, join)
    granted, grant = await asyncio.gather(grant_when_asked(alice, join), join.wait_for_grant())
    assert granted.code == join.network_code(), (granted.code, join.network_code())
    await finish_and_check(alice, join, root + "/laptop3", bytes([7] * 32), grant)


async def main():
    with tempfile.TemporaryDirectory() as root:
        await link_write_and_revoke(root)
        await link_over_the_network(root)
        await link_over_a_radio(root)
    print("python devices: 1 passed, 0 failed")


if __name__ == "__main__":
    asyncio.run(main())
