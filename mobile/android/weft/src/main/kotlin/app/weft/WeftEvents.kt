package app.weft

import app.weft.ffi.Event
import app.weft.ffi.EventListener
import app.weft.ffi.WeftNode
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow

/**
 * The node's events as a cold [Flow]: each collection subscribes a listener of its own, and
 * cancelling the collection cancels that subscription.
 *
 * ```
 * lifecycleScope.launch {
 *     node.events().collect { event ->
 *         when (event) {
 *             is Event.MessageReceived -> show(event.message)
 *             is Event.Lagged -> reloadEverything()   // `missed` events were dropped before this one
 *             else -> {}
 *         }
 *     }
 * }
 * ```
 *
 * Buffering: up to [capacity] events wait for a slow collector; what comes while they wait is
 * dropped and counted, and the collector gets one `Event.Lagged(missed)` before the next event
 * that fits, the same contract as a listener that falls behind inside Weft (whose own `Lagged`
 * events pass through, added to any count of ours). The listener never blocks Weft's listener
 * thread: blocking it would be simpler (Weft's own 1,024-event queue and `Lagged` would then do
 * the counting) but a collector that calls `shutdown()` from inside `collect` would deadlock,
 * since shutdown waits for that thread while the thread waits for the collector. An unlimited
 * buffer would never deadlock either, but an app that stops collecting without cancelling would
 * grow it without bound.
 *
 * Operators that drop (`conflate()`, `buffer(..., DROP_OLDEST)`) fuse with this buffer and
 * drop without a `Lagged`: prefer a `Lagged`-aware reload. The flow does not end by itself at
 * `shutdown()` (the listener is just released): cancel the collecting scope first.
 */
fun WeftNode.events(capacity: Int = EVENT_BUFFER): Flow<Event> = eventFlow(capacity) { listener ->
    val subscription = subscribe(listener)
    return@eventFlow { subscription.cancel() }
}

/** As many events as Weft's own per-listener queue holds. */
const val EVENT_BUFFER = 1024

/**
 * The flow over any event source: `subscribe` registers the listener and returns how to
 * cancel it. (Separate from [events] so that the buffering is tested without a node.)
 */
internal fun eventFlow(capacity: Int, subscribe: (EventListener) -> () -> Unit): Flow<Event> {
    require(capacity > 0) { "a capacity of at least one event" }
    return callbackFlow {
        val listener = object : EventListener {
            /** Dropped since the last event that got through. Weft calls a listener on one
             *  thread, one event at a time, so this needs no lock. */
            private var missed = 0uL

            override fun onEvent(event: Event) {
                if (event is Event.Lagged) {
                    missed += event.missed
                    flushMissed()
                    return
                }
                if (!flushMissed() || !trySend(event).isSuccess) missed += 1uL
            }

            /** Tells the collector what it missed, if anything; false when there is no room. */
            private fun flushMissed(): Boolean {
                if (missed == 0uL) return true
                if (!trySend(Event.Lagged(missed)).isSuccess) return false
                missed = 0uL
                return true
            }
        }
        val cancel = subscribe(listener)
        awaitClose { cancel() }
    }.buffer(capacity)
}
