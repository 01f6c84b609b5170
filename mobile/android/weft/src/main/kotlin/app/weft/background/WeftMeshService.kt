package app.weft.background

import android.app.Notification
import android.app.NotificationChannel
import android.app.NotificationManager
import android.app.Service
import android.content.Context
import android.content.Intent
import android.content.pm.ServiceInfo
import android.net.wifi.WifiManager
import android.os.Build
import android.os.IBinder
import android.util.Log
import androidx.core.app.NotificationCompat
import androidx.core.app.ServiceCompat
import androidx.core.content.ContextCompat
import app.weft.R
import app.weft.ble.BlePermissions
import app.weft.ble.WeftBleRadio
import android.bluetooth.le.ScanSettings
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.Job
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.cancel
import kotlinx.coroutines.launch

/**
 * The mesh in a pocket: a foreground service of type `connectedDevice` that keeps the node,
 * the Bluetooth radio, the network watch and a Wi-Fi multicast lock (for mDNS) for as long as
 * it runs, with its notification. Android then treats the app as in use: scans, advertising
 * and GATT connections go on with the screen off, and the process is not frozen.
 *
 * Declared by the module's manifest; started by [WeftBackground.enable] (from the app's screen,
 * where Android 12+ allows it) or by a wake-up scan ([WakeScan]) where Android allows it.
 * Android 14+ requires one of the type's prerequisites, which `CHANGE_WIFI_MULTICAST_STATE`
 * (declared) fulfils; the Bluetooth runtime permissions are still needed for the radio itself:
 * without them the service runs the network alone.
 */
class WeftMeshService : Service() {
    companion object {
        const val CHANNEL = "weft-mesh"
        private const val NOTIFICATION_ID = 0x7e1f
        private const val TAG = "WeftMesh"

        /** Whether an instance runs in this process (the wake-up receiver checks it). */
        @Volatile
        var running = false
            private set

        fun start(context: Context) {
            ContextCompat.startForegroundService(context, Intent(context, WeftMeshService::class.java))
        }

        fun stop(context: Context) {
            context.stopService(Intent(context, WeftMeshService::class.java))
        }
    }

    private val scope = CoroutineScope(SupervisorJob() + Dispatchers.Default)
    private var work: Job? = null
    private var radio: WeftBleRadio? = null
    private var network: NetworkWatch? = null
    private var multicast: WifiManager.MulticastLock? = null
    private var borrowed = false

    override fun onBind(intent: Intent?): IBinder? = null

    override fun onStartCommand(intent: Intent?, flags: Int, startId: Int): Int {
        // Within seconds of startForegroundService, or Android ends the app.
        if (!enterForeground()) {
            stopSelf()
            return START_NOT_STICKY
        }
        running = true
        if (work == null) work = scope.launch { run() }
        // Started again by Android (with a null intent) if it had to end the process.
        return START_STICKY
    }

    private fun enterForeground(): Boolean {
        val notification = notification()
        val type = if (Build.VERSION.SDK_INT >= 29) ServiceInfo.FOREGROUND_SERVICE_TYPE_CONNECTED_DEVICE else 0
        return try {
            ServiceCompat.startForeground(this, NOTIFICATION_ID, notification, type)
            true
        } catch (e: RuntimeException) {
            // ForegroundServiceStartNotAllowedException (Android 12+, started from the
            // background without an exemption) or SecurityException (Android 14+, a
            // prerequisite of the type missing).
            Log.w(TAG, "cannot run in the foreground: $e")
            false
        }
    }

    private fun notification(): Notification {
        val manager = getSystemService(NotificationManager::class.java)
        if (Build.VERSION.SDK_INT >= 26 && manager.getNotificationChannel(CHANNEL) == null) {
            manager.createNotificationChannel(
                NotificationChannel(CHANNEL, getString(R.string.weft_mesh_channel), NotificationManager.IMPORTANCE_LOW),
            )
        }
        (application as? WeftHost)?.meshNotification(this, CHANNEL)?.let { return it }
        return NotificationCompat.Builder(this, CHANNEL)
            .setSmallIcon(applicationInfo.icon)
            .setContentTitle(getString(R.string.weft_mesh_title))
            .setContentText(getString(R.string.weft_mesh_text))
            .setOngoing(true)
            .setPriority(NotificationCompat.PRIORITY_LOW)
            .setCategory(NotificationCompat.CATEGORY_SERVICE)
            .build()
    }

    private suspend fun run() {
        val host = application as? WeftHost
        if (host == null) {
            Log.e(TAG, "the Application does not implement app.weft.background.WeftHost; stopping")
            stopSelf()
            return
        }
        val node = try {
            host.weft.acquire().also { borrowed = true }
        } catch (e: Exception) {
            Log.e(TAG, "the node did not open: $e")
            stopSelf()
            return
        }
        WakeScan.stop(this) // our own scan covers it while we run
        multicast = (applicationContext.getSystemService(Context.WIFI_SERVICE) as WifiManager)
            .createMulticastLock("weft-mdns")
            .apply {
                setReferenceCounted(false)
                acquire()
            }
        network = NetworkWatch(this) { runCatching { node.networkChanged() } }.also { it.start() }
        if (BlePermissions.missing(this).isEmpty()) {
            radio = try {
                WeftBleRadio(this, node, ScanSettings.SCAN_MODE_LOW_POWER) { problem ->
                    Log.w(TAG, "radio: $problem")
                }.also { it.start() }
            } catch (e: IllegalStateException) {
                null // no Bluetooth on this device
            }
        } else {
            Log.w(TAG, "no Bluetooth permissions; the mesh service runs the network only")
        }
    }

    override fun onDestroy() {
        running = false
        work?.cancel()
        radio?.stop()
        radio = null
        network?.stop()
        network = null
        multicast?.takeIf { it.isHeld }?.release()
        multicast = null
        val host = application as? WeftHost
        val wasBorrowed = borrowed
        borrowed = false
        // The shutdown blocks for about a second: not on the main thread. The process-wide
        // scope outlives this service (and its cancelled `scope`).
        if (host != null && wasBorrowed) CoroutineScope(Dispatchers.IO).launch { host.weft.release() }
        if (WeftBackground.isEnabled(this)) WakeScan.start(this)
        scope.cancel()
        super.onDestroy()
    }
}
