package app.weft.background

import android.app.Notification
import android.content.Context

/**
 * Implemented by the app's `Application`, so that the mesh service and background work, which
 * Android may start with no screen open, find the node and what to show:
 * ```
 * class App : Application(), WeftHost {
 *     override val weft = SharedNode {
 *         openNode(filesDir.path + "/weft", DatabaseKeyStore(this).key(), null).also {
 *             it.startNetwork(NetworkConfig(emptyList(), emptyList(), relays, mdns = true))
 *         }
 *     }
 * }
 * ```
 */
interface WeftHost {
    val weft: SharedNode

    /**
     * The notification the mesh service shows while it runs (Android requires one). The
     * default says "Carrying messages nearby" with the app's icon; return your own to open
     * the app on tap or use a monochrome icon. `channel` is created already.
     */
    fun meshNotification(context: Context, channel: String): Notification? = null
}
