package app.weft.ble

import android.Manifest
import android.content.Context
import android.content.pm.PackageManager
import android.os.Build

/**
 * The runtime permissions the Bluetooth driver needs, and a guard for the calls that need them.
 *
 * Revoking a permission in Settings restarts the app's process, but a radio call can still be
 * made without one: a service started at boot or by a wake-up scan before the user granted it
 * (or after they denied it), a one-time grant that lapsed, a vendor build that revokes in place.
 * Every android.bluetooth call then throws `SecurityException`, which on the radio's handler
 * thread would end the process. [WeftBleRadio] runs every such call through [guarded]: the
 * exception becomes [RadioProblem.PermissionMissing] for the app, and the radio waits for
 * [WeftBleRadio.permissionsChanged].
 */
object BlePermissions {
    /** What to ask the user for before starting the radio, on this Android version. */
    fun needed(): List<String> =
        if (Build.VERSION.SDK_INT >= Build.VERSION_CODES.S) {
            listOf(
                Manifest.permission.BLUETOOTH_SCAN,
                Manifest.permission.BLUETOOTH_CONNECT,
                Manifest.permission.BLUETOOTH_ADVERTISE,
            )
        } else {
            // Before Android 12 a scan needs the location permission (Weft derives no location).
            listOf(Manifest.permission.ACCESS_FINE_LOCATION)
        }

    /** The needed permissions not granted now; empty when the radio can run. */
    fun missing(context: Context): List<String> =
        needed().filter { context.checkSelfPermission(it) != PackageManager.PERMISSION_GRANTED }

    /** Runs a platform call; a missing permission is returned as a problem instead of thrown. */
    inline fun <T> guarded(call: () -> T): Guarded<T> =
        try {
            Guarded.Done(call())
        } catch (e: SecurityException) {
            Guarded.Refused(RadioProblem.PermissionMissing(e.message ?: "a Bluetooth permission is missing"))
        }

    sealed class Guarded<out T> {
        class Done<T>(val value: T) : Guarded<T>()
        class Refused(val problem: RadioProblem) : Guarded<Nothing>()
    }
}

/** What keeps the radio from running, told to the app (it decides whether to ask the user). */
sealed class RadioProblem {
    /** A runtime permission is missing: ask for [BlePermissions.missing], then call
     *  [WeftBleRadio.permissionsChanged]. */
    data class PermissionMissing(val detail: String) : RadioProblem()

    /** The platform refused to advertise (`AdvertiseCallback` error code): this phone only
     *  connects to others. */
    data class AdvertisingFailed(val errorCode: Int) : RadioProblem()

    /** The platform refused to scan (`ScanCallback` error code): the radio tries again later. */
    data class ScanFailed(val errorCode: Int) : RadioProblem()
}
