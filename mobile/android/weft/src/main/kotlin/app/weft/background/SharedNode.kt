package app.weft.background

import app.weft.ffi.WeftNode
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.NonCancellable
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock
import kotlinx.coroutines.withContext

/**
 * The one node of this process, lent to whoever needs it: the app's screens, the mesh service,
 * background work. A home opens once per process (a second `openNode` is `HomeBusy`), so they
 * borrow it here; it opens with the first borrower and shuts down when the last gives it back.
 *
 * `open` opens the home (with the key from [DatabaseKeyStore] or the app's own) and starts what
 * every borrower expects running, usually `startNetwork`. No Android types: the JVM test runs it.
 */
class SharedNode(private val open: suspend () -> WeftNode) {
    private val lock = Mutex()
    private var node: WeftNode? = null
    private var borrowers = 0

    /** The node, opened if nobody holds it; give it back with [release]. */
    suspend fun acquire(): WeftNode = lock.withLock {
        val current = node ?: open().also { node = it }
        borrowers++
        current
    }

    /** Gives the node back; the last one back shuts it down (off the caller's thread, and
     *  before anyone can open it again). */
    suspend fun release() = withContext(NonCancellable) {
        lock.withLock {
            check(borrowers > 0) { "released more often than acquired" }
            borrowers--
            if (borrowers == 0) {
                val closing = node
                node = null
                if (closing != null) withContext(Dispatchers.IO) { closing.shutdown() }
            }
        }
    }

    /** Runs `block` with the node borrowed for its duration. */
    suspend fun <T> use(block: suspend (WeftNode) -> T): T {
        val borrowed = acquire()
        try {
            return block(borrowed)
        } finally {
            release()
        }
    }

    /** How many hold the node now (for tests and diagnostics). */
    suspend fun borrowers(): Int = lock.withLock { borrowers }
}
