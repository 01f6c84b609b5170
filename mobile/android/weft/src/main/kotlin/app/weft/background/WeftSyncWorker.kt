package app.weft.background

import android.content.Context
import android.util.Log
import androidx.work.CoroutineWorker
import androidx.work.WorkerParameters

/**
 * OS-scheduled catch-up for when the mesh service does not run: borrows the node, runs one
 * `syncOnce` (the CLI's catch-up: reach relays and peers, exchange what is pending, stop by
 * the deadline), gives the node back, and arms the wake-up scan again.
 *
 * Scheduled by [WeftBackground.enable] every 15 minutes at best (WorkManager's floor; Doze
 * stretches it to hours in deep idle), with a network, and run at once, expedited, when a
 * wake-up scan found a peer but Android 12+ would not let the mesh service start.
 */
class WeftSyncWorker(context: Context, params: WorkerParameters) : CoroutineWorker(context, params) {
    companion object {
        /** What `syncOnce` may take: well inside WorkManager's 10 minutes, and short enough
         *  that an expedited run (a scarce quota) is not cut off. */
        const val SYNC_BUDGET_MS = 60_000uL
    }

    override suspend fun doWork(): Result {
        val host = applicationContext as? WeftHost ?: return Result.failure()
        return try {
            val report = host.weft.use { node -> node.syncOnce(SYNC_BUDGET_MS) }
            Log.i("WeftSync", "synced ${report.envelopes} envelopes with ${report.peers} peers (early: ${report.finishedEarly})")
            Result.success()
        } catch (e: Exception) {
            Log.w("WeftSync", "sync failed: $e")
            Result.retry()
        } finally {
            if (WeftBackground.isEnabled(applicationContext) && !WeftMeshService.running) {
                WakeScan.start(applicationContext)
            }
        }
    }
    // No getForegroundInfo: expedited work is only asked for on Android 12+, where it runs as
    // an expedited job, not a foreground service.
}
