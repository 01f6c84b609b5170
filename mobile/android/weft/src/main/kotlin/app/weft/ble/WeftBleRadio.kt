package app.weft.ble

import android.annotation.SuppressLint
import android.bluetooth.BluetoothAdapter
import android.bluetooth.BluetoothDevice
import android.bluetooth.BluetoothGatt
import android.bluetooth.BluetoothGattCallback
import android.bluetooth.BluetoothGattCharacteristic
import android.bluetooth.BluetoothGattDescriptor
import android.bluetooth.BluetoothGattServer
import android.bluetooth.BluetoothGattServerCallback
import android.bluetooth.BluetoothGattService
import android.bluetooth.BluetoothManager
import android.bluetooth.BluetoothProfile
import android.bluetooth.BluetoothStatusCodes
import android.bluetooth.le.AdvertiseCallback
import android.bluetooth.le.AdvertiseData
import android.bluetooth.le.AdvertiseSettings
import android.bluetooth.le.ScanCallback
import android.bluetooth.le.ScanFilter
import android.bluetooth.le.ScanResult
import android.bluetooth.le.ScanSettings
import android.content.BroadcastReceiver
import android.content.Context
import android.content.Intent
import android.content.IntentFilter
import android.os.Build
import android.os.Handler
import android.os.HandlerThread
import android.os.ParcelUuid
import android.os.SystemClock
import android.util.Log
import app.weft.ffi.RadioDriver
import app.weft.ffi.RadioException
import app.weft.ffi.RadioHandle
import app.weft.ffi.WeftNode
import java.security.SecureRandom
import java.util.UUID

/**
 * Weft's Bluetooth mesh over android.bluetooth, in both roles at once: a GATT server that
 * advertises the Weft service (phones and desktops connect to it), and a scanner that connects
 * to other phones' Weft service as a GATT client.
 *
 * The radio only moves bytes: Weft hands it fragments for a link (`send`), and it reports links
 * and the fragments that arrive (`RadioHandle`). Every link, in either role, is one ordered
 * stream over the service's one data characteristic: the client writes (with response) and the
 * server notifies. [LinkTable] keeps one GATT operation in flight per link.
 *
 * The app asks for the permissions first ([BlePermissions.missing]), then:
 * ```
 * val radio = WeftBleRadio(context, node) { problem -> show(problem) }  // throws without Bluetooth
 * radio.start()
 * ...
 * radio.stop()                              // for good: make a new WeftBleRadio to restart
 * ```
 * Bluetooth switched off drops every link; switched on again, the radio starts over. A missing
 * permission is a [RadioProblem], never a `SecurityException` (see [BlePermissions]): the radio
 * idles until [permissionsChanged]. The scan is started again every 25 minutes, before
 * Android quietly downgrades it ([ScanSchedule]); a connection that is not ready within
 * [SETUP_TIMEOUT_MS] is given up; the advertisement starts once the GATT service is in place.
 * In the background the radio keeps running only inside a foreground service
 * (`app.weft.background.WeftMeshService`).
 */
@SuppressLint("MissingPermission")
class WeftBleRadio(
    private val context: Context,
    private val node: WeftNode,
    /** `SCAN_MODE_LOW_POWER` (10% of the time listening) for a phone in a pocket,
     *  `SCAN_MODE_BALANCED` (25%) while the app is on screen. */
    private val scanMode: Int = ScanSettings.SCAN_MODE_BALANCED,
    /** Told, on the radio's thread, what keeps the radio from running. */
    private val onProblem: (RadioProblem) -> Unit = {},
) : RadioDriver {
    companion object {
        /** Tries of a write the stack refused, and the wait before the first retry (then longer). */
        private const val WRITE_RETRIES = 5
        private const val WRITE_RETRY_MS = 20L

        /** The same service and characteristic as the desktop driver (core/src/mesh/radio/ble.rs). */
        val SERVICE: UUID = UUID.fromString("7e1f0001-9a3c-4b7e-a7d2-5c0f3e8bd14a")
        val DATA: UUID = UUID.fromString("7e1f0002-9a3c-4b7e-a7d2-5c0f3e8bd14a")
        /** Only on a laptop's server (BlueZ notifies every subscriber of a characteristic):
         *  reading it gives our notify slot, [LinkTable.slotUuid], to subscribe to instead. */
        val SLOTS: UUID = UUID.fromString("7e1f0003-9a3c-4b7e-a7d2-5c0f3e8bd14a")
        private val CLIENT_CONFIG: UUID = UUID.fromString("00002902-0000-1000-8000-00805f9b34fb")
        private const val TAG = "WeftBle"
        private const val MAX_MTU = 517
        private const val MAX_LINKS = 7
        /** How long one advertising token lasts (about as long as an Android address). */
        private const val TOKEN_LIFETIME_MS = 15L * 60 * 1000
        /** From `connectGatt` to a subscribed link. Android's own limit is about 30 s (and
         *  error 133); a peer that walked away holds one of [MAX_LINKS] places until then. */
        const val SETUP_TIMEOUT_MS = 10_000L
    }

    private val manager = context.getSystemService(Context.BLUETOOTH_SERVICE) as BluetoothManager
    private val adapter: BluetoothAdapter =
        manager.adapter ?: throw IllegalStateException("this device has no Bluetooth")
    private val thread = HandlerThread("weft-ble").apply { start() }
    /** Every Bluetooth call and callback is handled here, one at a time. */
    private val handler = Handler(thread.looper)
    private val scans = ScanSchedule()
    private val links = LinkTable<BluetoothDevice>()
    private val clients = HashMap<BluetoothDevice, BluetoothGatt>()
    private val mtus = HashMap<BluetoothDevice, Int>()
    /** The characteristic each client link takes notifications from (data, or a laptop's slot). */
    private val subscribed = HashMap<BluetoothDevice, UUID>()
    /** Client connections between connect and subscribed, by address. */
    private val connecting = HashSet<String>()
    /**
     * Who connects to whom is decided by comparing tokens. A token is new every
     * [TOKEN_LIFETIME_MS], and the advertisement restarts with it (which also gives it a new
     * random address on stacks with LE privacy): a token kept for the whole session would tie
     * together sightings of this phone across its address rotations, for days.
     */
    private var token = ByteArray(8).also { SecureRandom().nextBytes(it) }
    private val rotateToken = object : Runnable {
        override fun run() {
            if (stopped) return
            token = ByteArray(8).also { SecureRandom().nextBytes(it) }
            if (serviceAdded) {
                guarded { adapter.bluetoothLeAdvertiser?.stopAdvertising(advertiseCallback) }
                guarded { advertise() }
            }
            handler.postDelayed(this, TOKEN_LIFETIME_MS)
        }
    }
    private var server: BluetoothGattServer? = null
    /** The GATT service is in place (`onServiceAdded`): only then is it advertised, or a
     *  phone could connect and find no service. */
    private var serviceAdded = false
    private var scanning = false
    private var weft: RadioHandle? = null
    private var stopped = false
    /** A permission was missing: nothing runs until [permissionsChanged]. */
    private var blocked = false

    fun start() {
        weft = node.attachRadio(this)
        context.registerReceiver(adapterState, IntentFilter(BluetoothAdapter.ACTION_STATE_CHANGED))
        onRadio { if (adapter.isEnabled) startRoles() }
        handler.postDelayed(rotateToken, TOKEN_LIFETIME_MS)
    }

    fun stop() {
        handler.post {
            if (stopped) return@post
            stopped = true
            handler.removeCallbacks(rotateToken)
            handler.removeCallbacks(restartScan)
            runCatching { context.unregisterReceiver(adapterState) }
            stopRoles()
            // Weft's mesh over this radio stops too (it ran until the node shut down before).
            weft?.let { handle -> runCatching { node.detachRadio(handle) } }
            weft = null
            thread.quitSafely()
        }
    }

    /** The user granted what was missing (or changed their mind): the radio starts again. */
    fun permissionsChanged() {
        onRadio {
            blocked = false
            if (adapter.isEnabled) startRoles()
        }
    }

    /** Runs `work` on the radio's thread; a missing permission stops the radio, not the app. */
    private fun onRadio(work: () -> Unit) {
        handler.post { guarded(work) }
    }

    private fun <T> guarded(call: () -> T): T? =
        when (val outcome = BlePermissions.guarded(call)) {
            is BlePermissions.Guarded.Done -> outcome.value
            is BlePermissions.Guarded.Refused -> {
                permissionLost(outcome.problem)
                null
            }
        }

    private fun permissionLost(problem: RadioProblem) {
        if (blocked) return
        blocked = true
        Log.w(TAG, "the radio stops until permissionsChanged(): $problem")
        stopRoles()
        onProblem(problem)
    }

    private fun startRoles() {
        if (stopped || blocked || server != null) return
        openServer() // advertises from onServiceAdded
        scan()
    }

    /** Every call guarded on its own: the roles come down even with a permission gone. */
    private fun stopRoles() {
        handler.removeCallbacks(restartScan)
        if (scanning) guarded { adapter.bluetoothLeScanner?.stopScan(scanCallback) }
        scanning = false
        scans.stopped()
        guarded { adapter.bluetoothLeAdvertiser?.stopAdvertising(advertiseCallback) }
        for (device in clients.keys.toList() + links.ids().mapNotNull { links.endpointOf(it) }) {
            guarded { down(device) }
        }
        connecting.clear()
        guarded { server?.close() }
        server = null
        serviceAdded = false
    }

    private val adapterState = object : BroadcastReceiver() {
        override fun onReceive(context: Context, intent: Intent) {
            when (intent.getIntExtra(BluetoothAdapter.EXTRA_STATE, BluetoothAdapter.ERROR)) {
                BluetoothAdapter.STATE_ON -> onRadio { startRoles() }
                BluetoothAdapter.STATE_TURNING_OFF, BluetoothAdapter.STATE_OFF -> onRadio { stopRoles() }
            }
        }
    }

    // Weft → radio. Called on Weft's threads.

    override fun send(link: ULong, fragment: ByteArray) {
        when (val next = links.enqueue(link.toLong(), fragment)) {
            is LinkTable.Enqueued.WriteNow -> onRadio { write(link.toLong(), next.endpoint, next.fragment) }
            LinkTable.Enqueued.Queued -> {}
            // Dropped, not an error: an error would close the link; reconciliation repairs a loss.
            LinkTable.Enqueued.Full -> Log.d(TAG, "write queue of link $link full; a fragment dropped")
            LinkTable.Enqueued.NoLink -> throw RadioException.LinkGone()
        }
    }

    override fun disconnect(link: ULong) {
        onRadio { links.endpointOf(link.toLong())?.let { down(it) } }
    }

    // The radio's own work, on the handler thread.

    /**
     * Writes `fragment`, unless `link` went down meanwhile (the device may be on a new link).
     * A write or notification the stack refuses (it returns false, or BUSY on Android 13+, while
     * another GATT operation is in flight or its queue is full) is tried again a little later,
     * a few times, before the link is given up: dropping a link at the first refusal cost
     * whole reconciliations in a busy crowd.
     */
    private fun write(link: Long, device: BluetoothDevice, fragment: ByteArray, attempt: Int = 0) {
        if (links.endpointOf(link) != device) return
        val ok = if (links.isInitiator(link)) {
            val gatt = clients[device]
            val data = gatt?.getService(SERVICE)?.getCharacteristic(DATA)
            gatt != null && data != null && writeCharacteristic(gatt, data, fragment)
        } else {
            val data = server?.getService(SERVICE)?.getCharacteristic(DATA)
            data != null && notify(device, data, fragment)
        }
        if (ok) return
        if (attempt < WRITE_RETRIES) {
            handler.postDelayed({ guarded { write(link, device, fragment, attempt + 1) } }, WRITE_RETRY_MS * (attempt + 1))
        } else {
            Log.w(TAG, "a write to link $link was refused $WRITE_RETRIES times; dropping the link")
            down(device)
        }
    }

    private fun writeNext(device: BluetoothDevice) {
        val link = links.linkOf(device) ?: return
        links.written(link)?.let { write(link, device, it) }
    }

    private fun up(device: BluetoothDevice, initiator: Boolean) {
        val link = links.open(device, initiator)
        if (link == null) {
            // A second connection with a device we already have a link with (both connected at
            // once): keep the first.
            if (initiator) clients.remove(device)?.let { it.disconnect(); it.close() }
            return
        }
        val mtu = mtus[device] ?: 23
        try {
            weft?.linkUp(link.toULong(), mtu.toUInt(), initiator)
        } catch (e: Exception) {
            // Weft has all the links it takes, or the node closed.
            Log.i(TAG, "Weft did not take the link: $e")
            links.close(device)
            drop(device)
        }
    }

    /** Ends `device`'s link (telling Weft) and its connection, in whichever role. */
    private fun down(device: BluetoothDevice) {
        links.close(device)?.let { weft?.linkDown(it.toULong()) }
        drop(device)
    }

    private fun drop(device: BluetoothDevice) {
        subscribed.remove(device)
        val client = clients.remove(device)
        if (client != null) {
            client.disconnect()
            client.close()
        } else {
            server?.cancelConnection(device)
        }
        mtus.remove(device)
        connecting.remove(device.address)
    }

    private fun openServer() {
        val data = BluetoothGattCharacteristic(
            DATA,
            BluetoothGattCharacteristic.PROPERTY_WRITE or BluetoothGattCharacteristic.PROPERTY_NOTIFY,
            BluetoothGattCharacteristic.PERMISSION_WRITE,
        )
        data.addDescriptor(
            BluetoothGattDescriptor(
                CLIENT_CONFIG,
                BluetoothGattDescriptor.PERMISSION_READ or BluetoothGattDescriptor.PERMISSION_WRITE,
            ),
        )
        val service = BluetoothGattService(SERVICE, BluetoothGattService.SERVICE_TYPE_PRIMARY)
        service.addCharacteristic(data)
        server = manager.openGattServer(context, serverCallback)
        if (server?.addService(service) != true) Log.w(TAG, "no GATT server; this phone only connects to others")
    }

    private fun advertise() {
        val settings = AdvertiseSettings.Builder()
            .setAdvertiseMode(AdvertiseSettings.ADVERTISE_MODE_BALANCED)
            .setConnectable(true)
            .build()
        // The service UUID in the advertisement and the current random token in the scan
        // response (both in one packet would pass the 31-byte limit); nothing that names anyone.
        val data = AdvertiseData.Builder()
            .addServiceUuid(ParcelUuid(SERVICE))
            .setIncludeDeviceName(false)
            .build()
        val scanResponse = AdvertiseData.Builder()
            .addServiceData(ParcelUuid(SERVICE), token)
            .setIncludeDeviceName(false)
            .build()
        adapter.bluetoothLeAdvertiser?.startAdvertising(settings, data, scanResponse, advertiseCallback)
    }

    /**
     * Starts (or restarts) the scan when [ScanSchedule] allows, and schedules its restart
     * before Android's 30-minute downgrade. Uptime, like the `Handler` that wakes us.
     */
    private fun scan() {
        if (stopped || blocked) return
        handler.removeCallbacks(restartScan)
        val now = SystemClock.uptimeMillis()
        val at = scans.earliestStart(now)
        if (at > now) {
            handler.postAtTime(restartScan, at)
            return
        }
        val scanner = adapter.bluetoothLeScanner ?: return
        if (scanning) scanner.stopScan(scanCallback)
        val filter = ScanFilter.Builder().setServiceUuid(ParcelUuid(SERVICE)).build()
        val settings = ScanSettings.Builder().setScanMode(scanMode).build()
        scanner.startScan(listOf(filter), settings, scanCallback)
        scanning = true
        handler.postAtTime(restartScan, scans.started(now))
    }

    private val restartScan = Runnable { guarded { scan() } }

    private val scanCallback = object : ScanCallback() {
        override fun onScanResult(callbackType: Int, result: ScanResult) {
            onRadio { found(result) }
        }

        override fun onScanFailed(errorCode: Int) {
            onRadio {
                Log.w(TAG, "scan failed ($errorCode); trying again when the schedule allows")
                scanning = false
                onProblem(RadioProblem.ScanFailed(errorCode))
                // Not at once: error 6 (too frequent) would only repeat; a minute is enough.
                handler.removeCallbacks(restartScan)
                handler.postDelayed(restartScan, 60_000L)
            }
        }
    }

    private fun found(result: ScanResult) {
        if (stopped || blocked) return
        val device = result.device
        val record = result.scanRecord
        // Android never hides: its foreground service advertises as in the foreground.
        val seen = LinkTable.advertOf(record?.getServiceData(ParcelUuid(SERVICE)), record?.deviceName)
        if (!LinkTable.shouldConnect(token, seen, hidden = false)) return // they connect to us
        if (links.linkOf(device) != null || device.address in connecting) return
        if (links.ids().size + connecting.size >= MAX_LINKS) return
        connecting += device.address
        val gatt = device.connectGatt(context, false, clientCallback, BluetoothDevice.TRANSPORT_LE)
        if (gatt == null) {
            connecting -= device.address
            return
        }
        clients[device] = gatt
        // Given up if not subscribed in time; `connecting` still holding it says it is not up.
        handler.postDelayed({
            if (device.address in connecting && clients[device] === gatt) {
                Log.i(TAG, "a connection took longer than ${SETUP_TIMEOUT_MS} ms; given up")
                guarded { down(device) }
            }
        }, SETUP_TIMEOUT_MS)
    }

    private val advertiseCallback = object : AdvertiseCallback() {
        override fun onStartFailure(errorCode: Int) {
            handler.post {
                Log.w(TAG, "advertising failed ($errorCode); this phone only connects to others")
                onProblem(RadioProblem.AdvertisingFailed(errorCode))
            }
        }
    }

    /** The client role: we connected to their server. */
    private val clientCallback = object : BluetoothGattCallback() {
        override fun onConnectionStateChange(gatt: BluetoothGatt, status: Int, newState: Int) {
            onRadio {
                if (newState == BluetoothProfile.STATE_CONNECTED && status == BluetoothGatt.GATT_SUCCESS) {
                    if (!gatt.requestMtu(MAX_MTU)) down(gatt.device)
                } else {
                    down(gatt.device)
                    gatt.close()
                }
            }
        }

        override fun onMtuChanged(gatt: BluetoothGatt, mtu: Int, status: Int) {
            onRadio {
                // The MTU can change again later; set the link up only once.
                val first = gatt.device !in mtus
                mtus[gatt.device] = if (status == BluetoothGatt.GATT_SUCCESS) mtu else 23
                if (first && !gatt.discoverServices()) down(gatt.device)
            }
        }

        override fun onServicesDiscovered(gatt: BluetoothGatt, status: Int) {
            onRadio {
                val service = gatt.getService(SERVICE)
                val slots = service?.getCharacteristic(SLOTS)
                when {
                    status != BluetoothGatt.GATT_SUCCESS || service?.getCharacteristic(DATA) == null -> down(gatt.device)
                    // A laptop: ask which slot notifies us; `onCharacteristicRead` subscribes.
                    slots != null -> if (!gatt.readCharacteristic(slots)) down(gatt.device)
                    else -> subscribe(gatt, service.getCharacteristic(DATA))
                }
            }
        }

        @Deprecated("Android 13 passes the value; kept for older versions")
        override fun onCharacteristicRead(gatt: BluetoothGatt, c: BluetoothGattCharacteristic, status: Int) {
            val value = c.value?.copyOf()
            onRadio { slotRead(gatt, c, value, status) }
        }

        override fun onCharacteristicRead(gatt: BluetoothGatt, c: BluetoothGattCharacteristic, value: ByteArray, status: Int) {
            onRadio { slotRead(gatt, c, value, status) }
        }

        override fun onDescriptorWrite(gatt: BluetoothGatt, descriptor: BluetoothGattDescriptor, status: Int) {
            onRadio {
                connecting -= gatt.device.address
                if (status == BluetoothGatt.GATT_SUCCESS) up(gatt.device, initiator = true) else down(gatt.device)
            }
        }

        override fun onCharacteristicWrite(gatt: BluetoothGatt, c: BluetoothGattCharacteristic, status: Int) {
            onRadio {
                if (status == BluetoothGatt.GATT_SUCCESS) writeNext(gatt.device) else down(gatt.device)
            }
        }

        @Deprecated("Android 13 passes the value; kept for older versions")
        override fun onCharacteristicChanged(gatt: BluetoothGatt, c: BluetoothGattCharacteristic) {
            val value = c.value?.copyOf() ?: return
            onRadio { if (c.uuid == subscribed[gatt.device]) arrived(gatt.device, value) }
        }

        // Only the characteristic we subscribed to: a laptop notifies each central on its own
        // slot, and BlueZ does not stop a central from subscribing to others' slots too.
        override fun onCharacteristicChanged(gatt: BluetoothGatt, c: BluetoothGattCharacteristic, value: ByteArray) {
            onRadio { if (c.uuid == subscribed[gatt.device]) arrived(gatt.device, value) }
        }
    }

    /** The server role: they connected to us. */
    private val serverCallback = object : BluetoothGattServerCallback() {
        override fun onServiceAdded(status: Int, service: BluetoothGattService) {
            onRadio {
                if (status == BluetoothGatt.GATT_SUCCESS && service.uuid == SERVICE && !stopped && !blocked) {
                    serviceAdded = true
                    advertise()
                } else {
                    Log.w(TAG, "the GATT service was not added ($status); this phone only connects to others")
                }
            }
        }

        override fun onConnectionStateChange(device: BluetoothDevice, status: Int, newState: Int) {
            if (newState == BluetoothProfile.STATE_DISCONNECTED) {
                onRadio { if (clients[device] == null) down(device) }
            }
        }

        override fun onMtuChanged(device: BluetoothDevice, mtu: Int) {
            handler.post { mtus[device] = mtu }
        }

        override fun onDescriptorWriteRequest(
            device: BluetoothDevice,
            requestId: Int,
            descriptor: BluetoothGattDescriptor,
            preparedWrite: Boolean,
            responseNeeded: Boolean,
            offset: Int,
            value: ByteArray?,
        ) {
            onRadio {
                if (responseNeeded) server?.sendResponse(device, requestId, BluetoothGatt.GATT_SUCCESS, 0, null)
                // The client subscribed: the link is ready both ways.
                if (descriptor.uuid == CLIENT_CONFIG &&
                    value?.contentEquals(BluetoothGattDescriptor.ENABLE_NOTIFICATION_VALUE) == true
                ) {
                    up(device, initiator = false)
                }
            }
        }

        override fun onCharacteristicWriteRequest(
            device: BluetoothDevice,
            requestId: Int,
            characteristic: BluetoothGattCharacteristic,
            preparedWrite: Boolean,
            responseNeeded: Boolean,
            offset: Int,
            value: ByteArray?,
        ) {
            onRadio {
                // Fragments fit one write (the MTU Weft was told); a long (prepared) write is
                // refused rather than taken in pieces.
                val status = if (preparedWrite || offset != 0) BluetoothGatt.GATT_INVALID_OFFSET else BluetoothGatt.GATT_SUCCESS
                if (responseNeeded) server?.sendResponse(device, requestId, status, 0, null)
                if (status == BluetoothGatt.GATT_SUCCESS && characteristic.uuid == DATA && value != null) {
                    arrived(device, value)
                }
            }
        }

        override fun onExecuteWrite(device: BluetoothDevice, requestId: Int, execute: Boolean) {
            onRadio { server?.sendResponse(device, requestId, BluetoothGatt.GATT_SUCCESS, 0, null) }
        }

        override fun onNotificationSent(device: BluetoothDevice, status: Int) {
            onRadio { if (status == BluetoothGatt.GATT_SUCCESS) writeNext(device) else down(device) }
        }
    }

    /** Subscribes to `c`'s notifications: the link is up once the descriptor is written. */
    private fun subscribe(gatt: BluetoothGatt, c: BluetoothGattCharacteristic?) {
        val config = c?.getDescriptor(CLIENT_CONFIG)
        if (c == null || config == null || !gatt.setCharacteristicNotification(c, true) ||
            !writeDescriptor(gatt, config, BluetoothGattDescriptor.ENABLE_NOTIFICATION_VALUE)
        ) {
            down(gatt.device)
            return
        }
        subscribed[gatt.device] = c.uuid
    }

    /** A laptop's slot characteristic was read: subscribe to the slot it gave us. */
    private fun slotRead(gatt: BluetoothGatt, c: BluetoothGattCharacteristic, value: ByteArray?, status: Int) {
        val slot = LinkTable.slotOf(value)
        if (c.uuid != SLOTS || status != BluetoothGatt.GATT_SUCCESS || slot == null) {
            down(gatt.device)
            return
        }
        subscribe(gatt, gatt.getService(SERVICE)?.getCharacteristic(LinkTable.slotUuid(slot)))
    }

    private fun arrived(device: BluetoothDevice, fragment: ByteArray) {
        val link = links.linkOf(device) ?: return
        weft?.frame(link.toULong(), fragment)
    }

    // The write calls changed shape in Android 13; both are kept so the module runs from API 26.

    @Suppress("DEPRECATION")
    private fun writeCharacteristic(gatt: BluetoothGatt, c: BluetoothGattCharacteristic, value: ByteArray): Boolean =
        if (Build.VERSION.SDK_INT >= 33) {
            gatt.writeCharacteristic(c, value, BluetoothGattCharacteristic.WRITE_TYPE_DEFAULT) == BluetoothStatusCodes.SUCCESS
        } else {
            c.writeType = BluetoothGattCharacteristic.WRITE_TYPE_DEFAULT
            c.value = value
            gatt.writeCharacteristic(c)
        }

    @Suppress("DEPRECATION")
    private fun writeDescriptor(gatt: BluetoothGatt, d: BluetoothGattDescriptor, value: ByteArray): Boolean =
        if (Build.VERSION.SDK_INT >= 33) {
            gatt.writeDescriptor(d, value) == BluetoothStatusCodes.SUCCESS
        } else {
            d.value = value
            gatt.writeDescriptor(d)
        }

    @Suppress("DEPRECATION")
    private fun notify(device: BluetoothDevice, c: BluetoothGattCharacteristic, value: ByteArray): Boolean {
        val server = server ?: return false
        return if (Build.VERSION.SDK_INT >= 33) {
            server.notifyCharacteristicChanged(device, c, false, value) == BluetoothStatusCodes.SUCCESS
        } else {
            c.value = value
            server.notifyCharacteristicChanged(device, c, false)
        }
    }
}
