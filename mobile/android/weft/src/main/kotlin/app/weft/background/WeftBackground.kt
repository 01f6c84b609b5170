package app.weft.background

import android.app.ForegroundServiceStartNotAllowedException
import android.content.Context
import android.os.Build
import android.util.Log
import androidx.work.Constraints
import androidx.work.ExistingPeriodicWorkPolicy
import androidx.work.ExistingWorkPolicy
import androidx.work.NetworkType
import androidx.work.OneTimeWorkRequestBuilder
import androidx.work.OutOfQuotaPolicy
import androidx.work.PeriodicWorkRequestBuilder
import androidx.work.WorkManager
import java.util.concurrent.TimeUnit

/**
 * The app's one switch for Weft in the background:
 * ```
 * WeftBackground.enable(context)    // from a screen: the mesh service starts, sync is scheduled
 * WeftBackground.disable(context)   // the user turned it off
 * ```
 * Enabled, Weft runs in three layers, each for when the one above is not running:
 * 1. [WeftMeshService], the foreground service: Bluetooth mesh, network, mDNS, for as long as
 *    the user lets it run;
 * 2. [WakeScan], a scan Android runs for us, which starts layer 1 (or 3) when a peer appears;
 * 3. [WeftSyncWorker], periodic catch-up over the network.
 */
object WeftBackground {
    private const val PREFS = "weft-background"
    private const val ENABLED = "enabled"
    private const val PERIODIC = "weft-sync"
    private const val WOKEN = "weft-sync-woken"

    fun isEnabled(context: Context): Boolean =
        context.getSharedPreferences(PREFS, Context.MODE_PRIVATE).getBoolean(ENABLED, false)

    fun enable(context: Context) {
        context.getSharedPreferences(PREFS, Context.MODE_PRIVATE).edit().putBoolean(ENABLED, true).apply()
        val periodic = PeriodicWorkRequestBuilder<WeftSyncWorker>(15, TimeUnit.MINUTES)
            .setConstraints(Constraints.Builder().setRequiredNetworkType(NetworkType.CONNECTED).build())
            .build()
        WorkManager.getInstance(context).enqueueUniquePeriodicWork(PERIODIC, ExistingPeriodicWorkPolicy.KEEP, periodic)
        WeftMeshService.start(context)
    }

    fun disable(context: Context) {
        context.getSharedPreferences(PREFS, Context.MODE_PRIVATE).edit().putBoolean(ENABLED, false).apply()
        WorkManager.getInstance(context).cancelUniqueWork(PERIODIC)
        WakeScan.stop(context)
        WeftMeshService.stop(context)
    }

    /** A wake-up scan saw a peer. Starts the mesh service where Android allows a start from
     *  the background (before Android 12; or the user exempted the app from battery
     *  optimisation), else a one-off sync as expedited work. */
    internal fun woken(context: Context) {
        if (!isEnabled(context) || WeftMeshService.running) return
        try {
            WeftMeshService.start(context)
            return
        } catch (e: IllegalStateException) {
            // ForegroundServiceStartNotAllowedException is an IllegalStateException (API 31).
            if (Build.VERSION.SDK_INT >= 31 && e !is ForegroundServiceStartNotAllowedException) throw e
            Log.i("WeftWake", "the mesh service may not start from the background; syncing instead")
        }
        val once = OneTimeWorkRequestBuilder<WeftSyncWorker>()
            .setExpedited(OutOfQuotaPolicy.RUN_AS_NON_EXPEDITED_WORK_REQUEST)
            .build()
        WorkManager.getInstance(context).enqueueUniqueWork(WOKEN, ExistingWorkPolicy.KEEP, once)
    }
}
