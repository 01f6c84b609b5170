"""What the binding scripts share: two nodes that become contacts over libp2p on loopback.
(Imported after the script has put the generated bindings on sys.path.)"""
import asyncio

import weft_ffi


async def conversation_of(node, name):
    """The id of the conversation `node` shows as `name`: the API takes ids, never names."""
    for c in await node.conversations():
        if c.name == name:
            return c.id
    raise AssertionError(f"no conversation shown as {name!r}")


async def account_of(node, name):
    """The account id of `node`'s contact shown as `name`."""
    for c in await node.contacts():
        if c.name == name:
            return c.account
    raise AssertionError(f"no contact shown as {name!r}")


class PairedRadio(weft_ffi.RadioDriver):
    """Half of two radios in the same room: what one sends, the other hears."""

    def __init__(self):
        self.other = None  # the RadioHandle of the other side

    def send(self, link, fragment):
        self.other.frame(link, fragment)

    def disconnect(self, link):
        self.other.link_down(link)


def radios_in_one_room(first, second):
    """Attaches a paired radio to each (a node, or a joining device) and brings their link up;
    returns the two radio handles."""
    first_radio, second_radio = PairedRadio(), PairedRadio()
    first_handle, second_handle = first.attach_radio(first_radio), second.attach_radio(second_radio)
    first_radio.other, second_radio.other = second_handle, first_handle
    first_handle.link_up(1, 185, True)
    second_handle.link_up(1, 185, False)
    return first_handle, second_handle


async def contacts_by_bundle(first, second):
    """`first` adds `second` by link; bundles carried by hand both ways, no network at all."""
    await first.add_contact(await second.link(), None)
    await second.import_bundle(await first.export_bundle())
    first_name = (await first.identity()).name
    await second.accept_contact(await account_of(second, first_name))
    await first.import_bundle(await second.export_bundle())


def loopback(bootstrap=()):
    # No relay on loopback, so nobody to meet there: hole punching off (its default is on).
    return weft_ffi.NetworkConfig(listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=list(bootstrap), relays=[], mdns=False,
                                  hole_punching=False)


async def contacts_on_loopback(first, second, seconds=60):
    """Both nodes on loopback (the second dials the first); the first adds the second, who
    accepts once the request crossed the network."""
    addrs = await first.start_network(loopback())
    await second.start_network(loopback(addrs[:1]))
    first_name = (await first.identity()).name
    await first.add_contact(await second.link(), None)
    for _ in range(seconds * 10):
        if any(c.name == first_name for c in await second.contacts()):
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"the request from {first_name} never arrived")
    await second.accept_contact(await account_of(second, first_name))


async def until(check, what, seconds=30):
    """Waits until `check()` (a function or an async one) is true, at most `seconds`."""
    for _ in range(seconds * 20):
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never happened")
