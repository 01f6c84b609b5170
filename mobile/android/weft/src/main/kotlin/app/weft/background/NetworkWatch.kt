package app.weft.background

import android.content.Context
import android.net.ConnectivityManager
import android.net.Network

/**
 * Calls `changed` when the device's default network changes (Wi-Fi to mobile data, a new
 * network, the last one lost), so that the node drops connections that died with the old
 * interface and dials again at once (`WeftNode.networkChanged()`), instead of finding out
 * from timeouts minutes later. The callback Android makes at registration reports the network
 * we already have and is not passed on. Capability changes are not passed on either: they come with
 * every change of signal strength, and each `networkChanged` drops every connection.
 */
class NetworkWatch(context: Context, private val changed: () -> Unit) {
    private val connectivity = context.getSystemService(ConnectivityManager::class.java)
    private var current: Network? = null

    private val callback = object : ConnectivityManager.NetworkCallback() {
        override fun onAvailable(network: Network) {
            synchronized(this@NetworkWatch) {
                if (network == current) return
                current = network
            }
            changed()
        }

        override fun onLost(network: Network) {
            synchronized(this@NetworkWatch) {
                if (network != current) return
                current = null
            }
            changed()
        }
    }

    fun start() {
        synchronized(this) { current = connectivity.activeNetwork }
        connectivity.registerDefaultNetworkCallback(callback)
    }

    fun stop() {
        runCatching { connectivity.unregisterNetworkCallback(callback) }
    }
}
