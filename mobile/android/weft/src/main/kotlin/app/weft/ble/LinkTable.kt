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

    /**
     * What a scan saw of a Weft peer: who it is decides who opens the link.
     *
     * Both roles run on every phone (each advertises and scans), and without a rule each of two
     * phones would connect to the other, doubling every transfer. Each phone advertises a random
     * token for the session and the lower token connects, with one exception: an iPhone whose
     * app is in the background advertises its service UUID only in Apple's "overflow area"
     * (manufacturer data that only an iOS scanner looking for that UUID decodes), without its
     * local name and so without its token. An Android phone (or a desktop) does not see it at
     * all; another iPhone sees it without a token.
     */
    sealed class Advert {
        /** An Android phone: its token is the service data of its scan response. Android
         *  advertises the same way in the background (the foreground service keeps it up). */
        class Android(val token: ByteArray) : Advert()

        /** An iPhone in the foreground: its token is in its local name, `weft-<16 hex>`. */
        class Iphone(val token: ByteArray) : Advert()

        /** No token: an iPhone in the background (only iOS scanners see it), or a phone whose
         *  scan response was not received. */
        object Tokenless : Advert()
    }

    companion object {
        /**
         * Notify slot `k`'s characteristic on a laptop's server: BlueZ notifies every central
         * subscribed to a characteristic, so a laptop gives each central a slot of its own, read
         * from its slot characteristic (core/src/mesh/radio/ble/mod.rs, `slot`).
         */
        fun slotUuid(k: Int): java.util.UUID =
            java.util.UUID.fromString(String.format("7e1f01%02x-9a3c-4b7e-a7d2-5c0f3e8bd14a", k and 0xff))

        /** The slot a laptop's slot characteristic gave us, if the value is one. */
        fun slotOf(value: ByteArray?): Int? = value?.firstOrNull()?.let { it.toInt() and 0xff }

        /** iOS cannot advertise service data; it puts its token in the local name instead. */
        private const val IOS_NAME_PREFIX = "weft-"

        /** A peer's advertisement: Android's service data, or an iOS local name `weft-<16 hex>`. */
        fun advertOf(serviceData: ByteArray?, localName: String?): Advert {
            if (serviceData != null && serviceData.isNotEmpty()) return Advert.Android(serviceData)
            if (localName == null || !localName.startsWith(IOS_NAME_PREFIX)) return Advert.Tokenless
            val hex = localName.removePrefix(IOS_NAME_PREFIX)
            if (hex.length != 16) return Advert.Tokenless
            val token = runCatching { hex.chunked(2).map { it.toInt(16).toByte() }.toByteArray() }.getOrNull()
            return token?.let { Advert.Iphone(it) } ?: Advert.Tokenless
        }

        /**
         * Whether we open the link to the peer that advertised `seen`.
         *
         * `hidden` is true on an iPhone whose app is in the background: nobody but another
         * iPhone can see it, and that one sees it without a token. So a hidden iPhone connects
         * to every Android phone and every tokenless peer (a hidden iPhone, or one whose token
         * it missed); it leaves a foreground iPhone to connect to it, which that iPhone does
         * since a tokenless advertisement is always connected to. Everyone else compares
         * tokens. Two hidden iPhones may both connect (neither sees a token): two links, which
         * the mesh tolerates (messages are deduplicated by id); every other pair gets one.
         * Android is never hidden: its foreground service advertises in the background.
         */
        fun shouldConnect(ownToken: ByteArray, seen: Advert, hidden: Boolean = false): Boolean = when (seen) {
            Advert.Tokenless -> true
            is Advert.Android -> hidden || lower(ownToken, seen.token)
            is Advert.Iphone -> !hidden && lower(ownToken, seen.token)
        }

        /** Whether `ours` sorts before `theirs` (unsigned bytes, then length). */
        private fun lower(ours: ByteArray, theirs: ByteArray): Boolean {
            for (i in 0 until minOf(ours.size, theirs.size)) {
                val a = ours[i].toInt() and 0xff
                val b = theirs[i].toInt() and 0xff
                if (a != b) return a < b
            }
            return ours.size < theirs.size
        }
    }
}
