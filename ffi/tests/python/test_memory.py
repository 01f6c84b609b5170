"""RSS stays flat over 10,000 calls and 1,000 event callbacks through the real library.

Warm up first (the allocator's arenas, SQLite's page cache, the runtime's threads), then
measure the resident set before and after each load. Prints the figures for BENCHMARKS.md."""
import asyncio
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.environ["WEFT_BINDINGS_DIR"])

import weft_ffi  # noqa: E402

CALLS = 10_000
CALLBACKS = 1_000
# What "flat" allows: allocator noise and caches that fill to their cap, not growth per call.
ALLOWED_MIB = 8.0


def rss_mib():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Counter(weft_ffi.EventListener):
    def __init__(self):
        self.received = 0
        self.lock = threading.Lock()

    def on_event(self, event):
        if isinstance(event, weft_ffi.Event.MESSAGE_RECEIVED):
            with self.lock:
                self.received += 1


async def until(what, check, seconds=120):
    for _ in range(seconds * 20):
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def calls(node, n):
    """A mix of the calls an app makes all day: status, lists, a page of history."""
    for i in range(n):
        match i % 4:
            case 0:
                await node.status()
            case 1:
                await node.contacts()
            case 2:
                await node.conversations()
            case 3:
                await node.history("alice", None, 20)


async def main():
    with tempfile.TemporaryDirectory() as root:
        alice = await weft_ffi.open_node(root + "/alice", bytes([1] * 32), "alice")
        bob = await weft_ffi.open_node(root + "/bob", bytes([2] * 32), "bob")
        counter = Counter()
        subscription = bob.subscribe(counter)
        loopback = weft_ffi.NetworkConfig(listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=[], relays=[], mdns=False)
        addrs = await alice.start_network(loopback)
        await bob.start_network(weft_ffi.NetworkConfig(
            listen=["/ip4/127.0.0.1/tcp/0"], bootstrap=[addrs[0]], relays=[], mdns=False))
        await alice.add_contact(await bob.link(), None)
        for _ in range(600):
            if any(c.name == "alice" for c in await bob.contacts()):
                break
            await asyncio.sleep(0.1)
        await bob.accept_contact("alice")

        # Warm-up: the same kinds of work, a tenth of the measured amount.
        await calls(bob, CALLS // 10)
        for i in range(CALLBACKS // 10):
            await alice.send("bob", f"warm-up {i}")
        await until("the warm-up messages", lambda: counter.received >= CALLBACKS // 10)

        before_calls = rss_mib()
        await calls(bob, CALLS)
        after_calls = rss_mib()
        rounds = []
        for round in range(1, 4):
            for i in range(CALLBACKS):
                await alice.send("bob", f"message {i}")
            await until("a thousand callbacks", lambda: counter.received >= CALLBACKS // 10 + round * CALLBACKS)
            rounds.append(rss_mib())
        after_callbacks = rounds[0]
        print("rss after each round of callbacks: " + ", ".join(f"{r:.1f}" for r in rounds))

        subscription.cancel()
        await alice.shutdown()
        await bob.shutdown()

    calls_growth = after_calls - before_calls
    callbacks_growth = after_callbacks - after_calls
    print(f"rss after warm-up {before_calls:.1f} MiB; {CALLS} calls {calls_growth:+.1f} MiB; "
          f"{CALLBACKS} callbacks (and the messages behind them) {callbacks_growth:+.1f} MiB")
    assert calls_growth < ALLOWED_MIB, f"{CALLS} calls grew RSS by {calls_growth:.1f} MiB"
    assert callbacks_growth < ALLOWED_MIB, f"{CALLBACKS} callbacks grew RSS by {callbacks_growth:.1f} MiB"
    print("memory: 1 passed, 0 failed")


if __name__ == "__main__":
    asyncio.run(main())
