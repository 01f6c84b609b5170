package app.weft.background

import android.annotation.SuppressLint
import android.app.PendingIntent
import android.bluetooth.BluetoothManager
import android.bluetooth.le.BluetoothLeScanner
import android.bluetooth.le.ScanFilter
import android.bluetooth.le.ScanSettings
import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.os.ParcelUuid
import android.util.Log
import app.weft.ble.BlePermissions
import app.weft.ble.WeftBleRadio

/**
 * A scan that Android runs for us while no Weft code does (API 26+): when a Weft peer's
 * advertisement appears, Android delivers it to [WakeScanReceiver], starting the process if it
 * is not running, and the receiver starts the mesh ([WeftBackground.woken]).
 *
 * Low power (Android listens 10% of the time), filtered on the Weft service in the controller
 * where the phone offloads filters, and first-match where it can so that one peer wakes the app
 * once, not with every advertisement. It lives until stopped, the app is force-stopped or the
 * phone restarts; [WeftSyncWorker] arms it again on each run. It cannot see an iPhone whose app
 * is in the background (see `LinkTable.Advert`): that iPhone connects to us instead, and a
 * running mesh service takes it.
 */
object WakeScan {
    private const val TAG = "WeftWake"

    @SuppressLint("MissingPermission") // checked by BlePermissions, and guarded
    fun start(context: Context) {
        if (BlePermissions.missing(context).isNotEmpty()) return
        val adapter = context.getSystemService(BluetoothManager::class.java)?.adapter ?: return
        val filter = ScanFilter.Builder().setServiceUuid(ParcelUuid(WeftBleRadio.SERVICE)).build()
        val settings = ScanSettings.Builder()
            .setScanMode(ScanSettings.SCAN_MODE_LOW_POWER)
            .setCallbackType(
                if (adapter.isOffloadedFilteringSupported) ScanSettings.CALLBACK_TYPE_FIRST_MATCH
                else ScanSettings.CALLBACK_TYPE_ALL_MATCHES,
            )
            .build()
        val started = BlePermissions.guarded {
            adapter.bluetoothLeScanner?.startScan(listOf(filter), settings, intent(context)) ?: -1
        }
        if (started !is BlePermissions.Guarded.Done || started.value != 0) Log.w(TAG, "no wake-up scan: $started")
    }

    @SuppressLint("MissingPermission")
    fun stop(context: Context) {
        val adapter = context.getSystemService(BluetoothManager::class.java)?.adapter ?: return
        BlePermissions.guarded { adapter.bluetoothLeScanner?.stopScan(intent(context)) }
    }

    /** The same PendingIntent each time (so stop finds start's). Mutable: Android adds the
     *  scan results to it. Explicit, so Android 14 allows a mutable one. */
    private fun intent(context: Context): PendingIntent =
        PendingIntent.getBroadcast(
            context,
            0,
            Intent(context, WakeScanReceiver::class.java),
            PendingIntent.FLAG_UPDATE_CURRENT or PendingIntent.FLAG_MUTABLE,
        )
}

/** Where Android delivers the wake-up scan's results (declared in the module's manifest). */
class WakeScanReceiver : BroadcastReceiver() {
    override fun onReceive(context: Context, intent: Intent) {
        val error = intent.getIntExtra(BluetoothLeScanner.EXTRA_ERROR_CODE, 0)
        if (error != 0) {
            Log.w("WeftWake", "the wake-up scan failed ($error)")
            return
        }
        WeftBackground.woken(context)
    }
}
