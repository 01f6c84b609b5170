// Two nodes through the real library from Kotlin on the JVM (JNA): contacts over libp2p on
// loopback, then a message over the Bluetooth mesh through a radio written in Kotlin (an
// in-memory pair), then bad input. The same scenarios as tests/python/test_node.py, and one
// more: two nodes over radios built on the Android driver's LinkTable (one write in flight per
// link, the write callback on another thread), at the smallest MTU.
import app.weft.ble.LinkTable
import app.weft.ffi.*
import java.nio.file.Files
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking

class Recorder : EventListener {
    private val events = mutableListOf<Event>()

    override fun onEvent(event: Event) {
        synchronized(events) { events.add(event) }
    }

    fun received(via: Via? = null): List<Event.MessageReceived> = synchronized(events) {
        events.filterIsInstance<Event.MessageReceived>().filter { via == null || it.via == via }
    }
}

/** Half of two radios in the same room: what one sends, the other hears. */
class PairedRadio : RadioDriver {
    lateinit var other: RadioHandle

    override fun send(link: ULong, fragment: ByteArray) = other.frame(link, fragment)

    override fun disconnect(link: ULong) = other.linkDown(link)
}

/** A driver whose platform calls fail. */
class ThrowingRadio : RadioDriver {
    @Volatile var sends = 0

    override fun send(link: ULong, fragment: ByteArray) {
        sends++
        throw RadioException.Failed("the platform refused the write")
    }

    override fun disconnect(link: ULong): Unit = throw IllegalStateException("not even close works")
}

/**
 * A radio shaped like the Android driver (mobile/android/.../WeftBleRadio.kt): its LinkTable
 * queues fragments with one write in flight, and the "platform" completes each write on its own
 * thread, which hands out the next.
 */
class GattLikeRadio : RadioDriver {
    val links = LinkTable<GattLikeRadio>()
    lateinit var handle: RadioHandle
    private val air = java.util.concurrent.Executors.newSingleThreadExecutor()

    fun connect(other: GattLikeRadio, mtu: UInt) {
        val ours = links.open(other, initiator = true)!!
        val theirs = other.links.open(this, initiator = false)!!
        other.handle.linkUp(theirs.toULong(), mtu, false)
        handle.linkUp(ours.toULong(), mtu, true)
    }

    override fun send(link: ULong, fragment: ByteArray) {
        when (val next = links.enqueue(link.toLong(), fragment)) {
            is LinkTable.Enqueued.WriteNow -> air.execute { deliver(link.toLong(), next.endpoint, next.fragment) }
            LinkTable.Enqueued.Queued -> {}
            LinkTable.Enqueued.Full -> throw RadioException.Failed("the write queue is full")
            LinkTable.Enqueued.NoLink -> throw RadioException.LinkGone()
        }
    }

    private fun deliver(link: Long, to: GattLikeRadio, first: ByteArray) {
        var next: ByteArray? = first
        while (next != null) {
            val theirs = to.links.linkOf(this) ?: return
            to.handle.frame(theirs.toULong(), next)
            next = links.written(link) // the platform's "write done" callback
        }
    }

    override fun disconnect(link: ULong) {
        val other = links.endpointOf(link.toLong()) ?: return
        links.close(other)
        other.links.close(this)?.let { other.handle.linkDown(it.toULong()) }
    }

    fun stop() = air.shutdown()
}

suspend fun eventually(what: String, seconds: Int = 60, check: suspend () -> Boolean) {
    repeat(seconds * 10) {
        if (check()) return
        delay(100)
    }
    throw AssertionError("timed out waiting for $what")
}

inline fun <reified E : Throwable> refused(what: String, call: () -> Unit) {
    try {
        call()
    } catch (e: Throwable) {
        if (e is E) return
        throw AssertionError("$what: expected ${E::class.simpleName}, got $e")
    }
    throw AssertionError("$what: expected ${E::class.simpleName}, nothing was thrown")
}

fun key(byte: Int) = ByteArray(32) { byte.toByte() }

/** The id of the conversation shown as `name`: the API takes ids, never names. */
suspend fun WeftNode.conv(name: String) = conversations().first { it.name == name }.id

/** The account id of the contact shown as `name`. */
suspend fun WeftNode.account(name: String) = contacts().first { it.name == name }.account

fun loopback(bootstrap: List<String> = emptyList()) =
    NetworkConfig(listen = listOf("/ip4/127.0.0.1/tcp/0"), bootstrap = bootstrap, relays = emptyList(), mdns = false)

suspend fun overLibp2p(root: String) {
    val alice = openNode("$root/alice", key(1), "alice")
    val bob = openNode("$root/bob", key(2), "bob")
    val bobEvents = Recorder()
    val subscription = bob.subscribe(bobEvents)
    val aliceAddrs = alice.startNetwork(loopback())
    bob.startNetwork(loopback(listOf(aliceAddrs[0])))

    alice.addContact(bob.link(), null)
    eventually("bob to get alice's request") { bob.contacts().any { it.name == "alice" } }
    bob.acceptContact(bob.account("alice"))
    for (i in 0 until 5) alice.send(alice.conv("bob"), "hello $i")
    eventually("five messages") { bob.history(bob.conv("alice"), null, 100u).count { it.kind == MessageKind.TEXT } == 5 }
    // The listener is called on a Weft thread after the message is stored: it may lag the history.
    eventually("bob's listener to hear the five") { bobEvents.received().size >= 5 }
    bob.send(bob.conv("alice"), "and back")
    eventually("the reply") { alice.history(alice.conv("bob"), null, 100u).any { it.body == "and back" } }
    // Fresh keys on demand; a retention to set, read back and clear.
    check(bob.updateKeys(bob.conv("alice")) == 1u)
    check(bob.retention(bob.conv("alice")) == null)
    check(bob.setRetention(bob.conv("alice"), 604_800_000uL) == 0u)
    check(bob.retention(bob.conv("alice")) == 604_800_000uL)
    bob.setRetention(bob.conv("alice"), null)

    // Paging two at a time back to the start gives the whole history.
    val everything = bob.history(bob.conv("alice"), null, 100u)
    val paged = mutableListOf<Message>()
    var before: String? = null
    while (true) {
        val page = bob.history(bob.conv("alice"), before, 2u)
        if (page.isEmpty()) break
        paged.addAll(0, page)
        before = page.first().id
    }
    check(paged.map { it.id } == everything.map { it.id }) { "paging lost or repeated messages" }
    check(bob.identity().name == "bob")
    // Calls from many host threads at once, on the same node.
    val threads = (0 until 8).map { n ->
        kotlin.concurrent.thread {
            runBlocking {
                repeat(10) { i ->
                    bob.status()
                    bob.send(bob.conv("alice"), "thread $n message $i")
                }
            }
        }
    }
    threads.forEach { it.join() }
    check(bob.history(bob.conv("alice"), null, 1000u).count { it.body.startsWith("thread ") } == 80)
    val afterThreads = bob.history(bob.conv("alice"), null, 1000u)

    subscription.cancel()
    alice.shutdown()
    bob.shutdown()
    refused<WeftException.Closed>("send after close") { runBlocking { alice.send(alice.conv("bob"), "after close") } }
    // A wrong key opens nothing and changes nothing: the right key still finds every message.
    refused<WeftException.WrongKey>("a wrong key") { runBlocking { openNode("$root/bob", key(9), null) } }
    val again = openNode("$root/bob", key(2), null)
    check(again.history(again.conv("alice"), null, 1000u).map { it.id } == afterThreads.map { it.id })
    again.shutdown()
}

/** Contacts by bundle, carried by hand: no network at all. */
suspend fun contactsByBundle(first: WeftNode, firstName: String, second: WeftNode) {
    first.addContact(second.link(), null)
    second.importBundle(first.exportBundle())
    second.acceptContact(second.account(firstName))
    first.importBundle(second.exportBundle())
}

suspend fun overTheMesh(root: String) {
    val carol = openNode("$root/carol", key(3), "carol")
    val dave = openNode("$root/dave", key(4), "dave")
    contactsByBundle(carol, "carol", dave)

    val daveEvents = Recorder()
    val subscription = dave.subscribe(daveEvents)
    // First a radio with no neighbour yet: the message waits in the outbox. Then its one link
    // fails every write. (Checked before that link is up: the mesh counts a message handed over
    // once it is queued on a link, even if the radio then fails it; see the closing note.)
    val broken = ThrowingRadio()
    val brokenHandle = carol.attachRadio(broken)
    carol.send(carol.conv("dave"), "over the air")
    check(carol.status().outbox >= 1u) { "an undelivered message stays queued" }
    brokenHandle.linkUp(99uL, 185u, true)
    eventually("the broken radio's first write", 10) { broken.sends >= 1 }
    val carolRadio = PairedRadio()
    val daveRadio = PairedRadio()
    val carolHandle = carol.attachRadio(carolRadio)
    val daveHandle = dave.attachRadio(daveRadio)
    carolRadio.other = daveHandle
    daveRadio.other = carolHandle
    carolHandle.linkUp(1uL, 185u, true)
    daveHandle.linkUp(1uL, 185u, false)
    eventually("the message over the mesh") { daveEvents.received(Via.MESH).size == 1 }
    check(daveEvents.received(Via.MESH)[0].message.body == "over the air")
    subscription.cancel()
    carol.shutdown()
    dave.shutdown()
    // Calls from the radio after the node closed do nothing.
    carolHandle.frame(1uL, "late".toByteArray())
    carolHandle.linkDown(1uL)
}

suspend fun overLinkTables(root: String) {
    // Of two phones that see each other, exactly one opens the link.
    val tokens = List(100) { ByteArray(8).also { java.security.SecureRandom().nextBytes(it) } }
    for ((a, b) in tokens.zip(tokens.drop(1))) {
        check(LinkTable.shouldConnect(a, b) != LinkTable.shouldConnect(b, a)) { "both or neither connect" }
    }
    check(LinkTable.shouldConnect(tokens[0], null)) { "a peer without a token is connected to" }
    // An iOS phone's token comes in its local name.
    check(LinkTable.tokenOf(null, "weft-00ff10203040a0b0")!!.contentEquals(
        byteArrayOf(0, -1, 0x10, 0x20, 0x30, 0x40, -0x60, -0x50)))
    check(LinkTable.tokenOf(null, "weft-zz") == null && LinkTable.tokenOf(null, "Pixel 8") == null)
    check(LinkTable.tokenOf(tokens[1], "weft-00ff10203040a0b0")!!.contentEquals(tokens[1]))

    val grace = openNode("$root/grace", key(7), "grace")
    val heidi = openNode("$root/heidi", key(8), "heidi")
    contactsByBundle(grace, "grace", heidi)
    val heidiEvents = Recorder()
    val subscription = heidi.subscribe(heidiEvents)
    val graceRadio = GattLikeRadio()
    val heidiRadio = GattLikeRadio()
    graceRadio.handle = grace.attachRadio(graceRadio)
    heidiRadio.handle = heidi.attachRadio(heidiRadio)
    graceRadio.connect(heidiRadio, 23u) // the smallest MTU: every message is many fragments

    val sent = (0 until 20).map { grace.send(grace.conv("heidi"), "fragment me ${"x".repeat(it * 40)}").id }
    eventually("twenty messages over the queued radio") { heidiEvents.received(Via.MESH).size == 20 }
    check(heidiEvents.received(Via.MESH).map { it.message.id }.toSet() == sent.toSet())
    subscription.cancel()
    grace.shutdown()
    heidi.shutdown()
    graceRadio.stop()
    heidiRadio.stop()
}

suspend fun badInput(root: String) {
    refused<WeftException.InvalidInput>("a short key") { runBlocking { openNode("$root/frank", ByteArray(5), "frank") } }
    val erin = openNode("$root/erin", key(5), "erin")
    refused<WeftException.NotFound>("an unknown conversation") { runBlocking { erin.send("f".repeat(64), "hello?") } }
    refused<WeftException.InvalidInput>("a bad address") {
        runBlocking { erin.startNetwork(NetworkConfig(listOf("not an address"), emptyList(), emptyList(), false)) }
    }
    val radio = ThrowingRadio()
    val handle = erin.attachRadio(radio)
    handle.linkUp(7uL, 23u, true)
    handle.frame(7uL, ByteArray(10_000)) // larger than any MTU: dropped
    handle.frame(8uL, "no such link".toByteArray())
    eventually("weft to reconcile over the link", 5) { radio.sends >= 1 }
    erin.shutdown()
    refused<WeftException.Closed>("a link after close") { handle.linkUp(10uL, 185u, false) }
}

fun main() = runBlocking {
    val root = Files.createTempDirectory("weft-kotlin").toString()
    try {
        overLibp2p(root)
        overTheMesh(root)
        overLinkTables(root)
        badInput(root)
    } finally {
        java.io.File(root).deleteRecursively()
    }
    println("kotlin node: 4 passed, 0 failed")
}
