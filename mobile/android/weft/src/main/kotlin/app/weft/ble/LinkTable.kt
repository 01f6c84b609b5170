package app.weft.ble

/**
 * The Bluetooth driver's bookkeeping, without Android types so it runs (and is tested) on any
 * JVM: which link id each remote end has, and each link's ordered queue of fragments with one
 * write in flight, because a GATT connection takes one operation at a time and Weft's fragments
 * must arrive in order.
 *
 * `E` is the platform's handle for a remote end (a `BluetoothDevice` on Android). Thread-safe:
 * Weft calls `enqueue` on its threads while the platform's callbacks call the rest.
 */
class LinkTable<E : Any>(
    /** Fragments queued per link before `enqueue` refuses: one largest envelope at MTU 23. */
    private val maxQueued: Int = 2048,
) {
    private class Link<E>(val endpoint: E, val initiator: Boolean) {
        val queue = ArrayDeque<ByteArray>()
        var inFlight = false
    }

    /** What `enqueue` decided. */
    sealed class Enqueued<out E> {
        /** Nothing was in flight: write this now and call `written` when the platform says so. */
        data class WriteNow<E>(val endpoint: E, val fragment: ByteArray) : Enqueued<E>()
        /** Behind a write in flight; `written` hands it out in turn. */
        object Queued : Enqueued<Nothing>()
        /** The queue is full: this fragment is dropped (the mesh's reconciliation repairs it). */
        object Full : Enqueued<Nothing>()
        /** No such link (it went down). */
        object NoLink : Enqueued<Nothing>()
    }

    private val byEndpoint = HashMap<E, Long>()
    private val links = HashMap<Long, Link<E>>()
    private var nextId = 1L

    /** Gives `endpoint` a new link id, or null when it already has a link. */
    @Synchronized
    fun open(endpoint: E, initiator: Boolean): Long? {
        if (endpoint in byEndpoint) return null
        val id = nextId++
        byEndpoint[endpoint] = id
        links[id] = Link(endpoint, initiator)
        return id
    }

    @Synchronized
    fun linkOf(endpoint: E): Long? = byEndpoint[endpoint]

    @Synchronized
    fun endpointOf(link: Long): E? = links[link]?.endpoint

    @Synchronized
    fun isInitiator(link: Long): Boolean = links[link]?.initiator ?: false

    /** Forgets `endpoint`'s link and what was queued on it; returns the link id it had. */
    @Synchronized
    fun close(endpoint: E): Long? {
        val id = byEndpoint.remove(endpoint) ?: return null
        links.remove(id)
        return id
    }

    @Synchronized
    fun ids(): List<Long> = links.keys.toList()

    @Synchronized
    fun enqueue(link: Long, fragment: ByteArray): Enqueued<E> {
        val state = links[link] ?: return Enqueued.NoLink
        if (!state.inFlight) {
            state.inFlight = true
            return Enqueued.WriteNow(state.endpoint, fragment)
        }
        if (state.queue.size >= maxQueued) return Enqueued.Full
        state.queue.addLast(fragment)
        return Enqueued.Queued
    }

    /** The write in flight on `link` finished; returns the next fragment to write, if any. */
    @Synchronized
    fun written(link: Long): ByteArray? {
        val state = links[link] ?: return null
        val next = state.queue.removeFirstOrNull()
        state.inFlight = next != null
        return next
    }

    companion object {
        /**
         * Which of two phones that see each other opens the link: both advertise and both scan,
         * and without a rule each would connect to the other, doubling every transfer. Each
         * advertises a random token for the session; the lower one connects. An advertisement
         * without a token (a desktop, or an iOS app in the background) is always connected to.
         */
        /** iOS cannot advertise service data; it puts its token in the local name instead. */
        private const val IOS_NAME_PREFIX = "weft-"

        /** A peer's session token: Android's service data, or an iOS local name `weft-<16 hex>`. */
        fun tokenOf(serviceData: ByteArray?, localName: String?): ByteArray? {
            if (serviceData != null) return serviceData
            if (localName == null || !localName.startsWith(IOS_NAME_PREFIX)) return null
            val hex = localName.removePrefix(IOS_NAME_PREFIX)
            if (hex.length != 16) return null
            return runCatching { hex.chunked(2).map { it.toInt(16).toByte() }.toByteArray() }.getOrNull()
        }

        fun shouldConnect(ownToken: ByteArray, theirToken: ByteArray?): Boolean {
            if (theirToken == null) return true
            for (i in 0 until minOf(ownToken.size, theirToken.size)) {
                val ours = ownToken[i].toInt() and 0xff
                val theirs = theirToken[i].toInt() and 0xff
                if (ours != theirs) return ours < theirs
            }
            return ownToken.size < theirToken.size
        }
    }
}
