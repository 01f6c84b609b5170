"""RSS stays flat over 10,000 calls and 1,000 event callbacks through the real library.

Warm up first (the allocator's arenas, the runtime's threads), then measure the resident set
before and after each load. Callbacks come from messages arriving, and storing messages grows
SQLite's caches, so rounds of a thousand messages alternate between heard by a listener and not:
the difference is what the callbacks cost. Prints the figures for BENCHMARKS.md."""
import asyncio
import os
import sys
import tempfile
import threading

sys.path.insert(0, os.environ["WEFT_BINDINGS_DIR"])

import weft_ffi  # noqa: E402
from pair import contacts_on_loopback, conversation_of  # noqa: E402

CALLS = 10_000
CALLBACKS = 1_000
# What "flat" allows: allocator noise and caches that fill to their cap, not growth per call
# (a leak of one buffer per call, 1 KiB, would show as 10 MiB).
ALLOWED_MIB = 8.0
# Callbacks are measured against the same messages arriving unheard (storing a message grows
# SQLite's page cache up to its cap); 2 MiB is 2 KiB per callback.
CALLBACK_ALLOWED_MIB = 2.0


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
                await node.history(await conversation_of(node, "alice"), None, 20)


async def main():
    with tempfile.TemporaryDirectory() as root:
        alice = await weft_ffi.open_node(root + "/alice", bytes([1] * 32), "alice")
        bob = await weft_ffi.open_node(root + "/bob", bytes([2] * 32), "bob")
        counter = Counter()
        subscription = bob.subscribe(counter)
        await contacts_on_loopback(alice, bob)

        # Warm-up: a tenth of the calls, and a full round of messages (storing messages and
        # their receipts fills SQLite's page caches, which would otherwise count as growth).
        await calls(bob, CALLS // 10)
        for i in range(CALLBACKS):
            await alice.send(await conversation_of(alice, "bob"), f"warm-up {i}")
        await until("the warm-up messages", lambda: counter.received >= CALLBACKS)

        before_calls = rss_mib()
        await calls(bob, CALLS)
        after_calls = rss_mib()
        # Rounds of a thousand messages, alternately heard by the listener and not, so that
        # what the callbacks cost shows apart from what storing the messages costs.
        rounds = []
        heard = CALLBACKS
        for round in range(3):
            listening = round % 2 == 1
            if not listening:
                subscription.cancel()
            start = rss_mib()
            for i in range(CALLBACKS):
                await alice.send(await conversation_of(alice, "bob"), f"round {round} message {i}")
            if listening:
                heard += CALLBACKS
                await until("a thousand callbacks", lambda: counter.received >= heard)
            else:
                last = f"round {round} message {CALLBACKS - 1}"
                for _ in range(2400):
                    if any(m.body == last for m in await bob.history(await conversation_of(bob, "alice"), None, 1)):
                        break
                    await asyncio.sleep(0.05)
                subscription = bob.subscribe(counter)
            rounds.append((listening, rss_mib() - start))
        # The unheard rounds bracket the heard one.
        print("rss growth per round of 1000 messages: " + ", ".join(
            f"{'with' if heard else 'without'} callbacks {growth:+.1f} MiB" for heard, growth in rounds))
        subscription.cancel()
        alice.shutdown()
        bob.shutdown()

    calls_growth = after_calls - before_calls
    with_callbacks = [g for heard, g in rounds if heard]
    without = [g for heard, g in rounds if not heard]
    callbacks_cost = sum(with_callbacks) / len(with_callbacks) - sum(without) / len(without)
    print(f"rss after warm-up {before_calls:.1f} MiB; {CALLS} calls {calls_growth:+.1f} MiB; "
          f"{CALLBACKS} callbacks cost {callbacks_cost:+.1f} MiB beyond the messages behind them")
    assert calls_growth < ALLOWED_MIB, f"{CALLS} calls grew RSS by {calls_growth:.1f} MiB"
    assert callbacks_cost < CALLBACK_ALLOWED_MIB, f"{CALLBACKS} callbacks cost {callbacks_cost:.1f} MiB"
    print("memory: 1 passed, 0 failed")


if __name__ == "__main__":
    asyncio.run(main())
