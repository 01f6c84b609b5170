package app.weft.ble

/**
 * When the Bluetooth scan may start and when it must start again. Pure (the time is passed in,
 * in milliseconds of one monotonic clock) so that it runs, and is tested, on any JVM; the radio
 * calls it on its one handler thread, so it takes no lock.
 *
 * Two platform limits shape it:
 * - Android 7 and later turn a scan that has run for 30 minutes into an opportunistic one,
 *   which finds nothing by itself, without telling the app. The radio starts its scan again
 *   every [restartEveryMs] (25 minutes: five minutes of margin).
 * - Android refuses a sixth scan start within 30 seconds from one app (silently before
 *   Android 10, `SCAN_FAILED_SCANNING_TOO_FREQUENTLY` after). Every start (the scheduled
 *   restart, Bluetooth switched on again, a permission granted, a changed scan mode) asks
 *   [earliestStart] first, which keeps at most [maxStarts] starts in any [windowMs].
 */
class ScanSchedule(
    val restartEveryMs: Long = 25 * 60_000L,
    /** One fewer than Android's five, for the wake-up scan and clock slack. */
    val maxStarts: Int = 4,
    val windowMs: Long = 30_000L,
) {
    init {
        require(restartEveryMs > 0 && maxStarts > 0 && windowMs > 0)
    }

    /** When the recent starts were, oldest first; none older than [windowMs]. */
    private val starts = ArrayDeque<Long>()
    private var runningSince: Long? = null

    /** The earliest time, `now` or later, at which a scan may start. */
    fun earliestStart(now: Long): Long {
        forgetBefore(now)
        if (starts.size < maxStarts) return now
        // The start that leaves the window first makes room.
        return starts[starts.size - maxStarts] + windowMs
    }

    /** A scan started at `now` (whether or not the platform took it: Android counts it).
     *  Returns when it must be restarted. */
    fun started(now: Long): Long {
        forgetBefore(now)
        starts.addLast(now)
        runningSince = now
        return now + restartEveryMs
    }

    /** The scan was stopped (Bluetooth off, the radio stopped). */
    fun stopped() {
        runningSince = null
    }

    /** When the running scan is due for a restart; null when none runs. */
    fun restartDue(): Long? = runningSince?.plus(restartEveryMs)

    /** Whether the running scan is due for a restart at `now`. */
    fun isDue(now: Long): Boolean = restartDue()?.let { now >= it } ?: false

    private fun forgetBefore(now: Long) {
        while (starts.isNotEmpty() && starts.first() + windowMs <= now) starts.removeFirst()
    }
}
