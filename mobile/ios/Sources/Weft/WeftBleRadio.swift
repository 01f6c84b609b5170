import CoreBluetooth
import Foundation
import WeftFFI
#if os(iOS)
import UIKit
#endif

/// Weft's Bluetooth mesh over CoreBluetooth, in both roles at once: a peripheral that
/// advertises the Weft service (phones and desktops connect to it), and a central that connects
/// to other phones' Weft service. The same GATT layout as Android's driver and the desktop's
/// (core/src/mesh/radio/ble.rs): one data characteristic; the central writes with response and
/// the peripheral notifies.
///
/// The radio only moves bytes: Weft hands it fragments for a link (`send`) and it reports links
/// and arriving fragments through the `RadioHandle`. The app's Info.plist needs
/// `NSBluetoothAlwaysUsageDescription` (and the `bluetooth-central` and `bluetooth-peripheral`
/// background modes to mesh in the background). Usage:
///
///     let radio = try WeftBleRadio(node: node)
///     ...
///     radio.stop()
///
/// In the background (iOS): both managers use restore identifiers when the Info.plist has the
/// background modes, so iOS relaunches the app for a Bluetooth event after it was ended; make
/// the radio again at launch (see `WeftBackground`) and `willRestoreState` takes over the
/// connections. Work after such a wake runs inside a background task. An iPhone in the
/// background advertises in Apple's overflow area, where Android cannot see it, so it opens
/// the links itself (`LinkTable.shouldConnect`, `hidden`). The scan allows duplicates in the
/// foreground and is restarted every 30 s in the background, so that a peer that left and came
/// back is found again. Not compiled here (no Xcode on the machines this was written on).
public final class WeftBleRadio: NSObject, RadioDriver, @unchecked Sendable {
    public static let service = CBUUID(string: "7E1F0001-9A3C-4B7E-A7D2-5C0F3E8BD14A")
    public static let data = CBUUID(string: "7E1F0002-9A3C-4B7E-A7D2-5C0F3E8BD14A")
    /// Only on a server that cannot notify one central alone (a Linux laptop's BlueZ): reading
    /// it gives the index of the notify slot to subscribe to instead of `data`
    /// (`LinkTable.slotUUID`; core/src/mesh/radio/ble/slots.rs).
    public static let slots = CBUUID(string: "7E1F0003-9A3C-4B7E-A7D2-5C0F3E8BD14A")
    private static let maxLinks = 7
    /// From `connect` to a subscribed link (iOS never times a connection attempt out itself).
    private static let setupTimeout: TimeInterval = 10
    /// How often the scan starts over in the background, where iOS reports each peripheral
    /// once per scan: a peer that left and came back is then reported again.
    private static let backgroundRescan: TimeInterval = 30
    public static let centralRestoreIdentifier = "app.weft.ble.central"
    public static let peripheralRestoreIdentifier = "app.weft.ble.peripheral"

    /// Every CoreBluetooth call and callback runs here, one at a time.
    private let queue = DispatchQueue(label: "app.weft.ble")
    private let links = LinkTable()
    /// Who connects to whom is decided by comparing tokens. A token is new every
    /// `tokenLifetime` and the advertisement restarts with it: one kept for the whole session
    /// would tie together sightings of this phone across its address rotations, for days.
    private var token: Data
    private static let tokenLifetime: TimeInterval = 15 * 60
    private var rotation: DispatchSourceTimer?
    private var handle: RadioHandle?
    private let node: WeftNode
    private var central: CBCentralManager!
    private var peripheralManager: CBPeripheralManager!
    private var characteristic: CBMutableCharacteristic?
    /// Peripherals we connected to (central role), by identifier.
    private var peripherals: [UUID: CBPeripheral] = [:]
    /// Centrals subscribed to us (peripheral role), by identifier.
    private var centrals: [UUID: CBCentral] = [:]
    /// Notifications that did not fit in the peripheral manager's queue, by link.
    private var pendingNotify: [UInt64: Data] = [:]
    private var stopped = false
    /// Our app is in the background: Android cannot see our advertisement (see `LinkTable`).
    private var hidden = false
    private var rescan: DispatchSourceTimer?
    private let background = BackgroundWork()
    private var observers: [NSObjectProtocol] = []

    public init(node: WeftNode) throws {
        token = Self.freshToken()
        self.node = node
        super.init()
        handle = try node.attachRadio(driver: self)
        central = CBCentralManager(delegate: self, queue: queue, options: Self.restoring(
            CBCentralManagerOptionRestoreIdentifierKey, Self.centralRestoreIdentifier, mode: "bluetooth-central"))
        peripheralManager = CBPeripheralManager(delegate: self, queue: queue, options: Self.restoring(
            CBPeripheralManagerOptionRestoreIdentifierKey, Self.peripheralRestoreIdentifier, mode: "bluetooth-peripheral"))
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + Self.tokenLifetime, repeating: Self.tokenLifetime)
        timer.setEventHandler { [weak self] in self?.rotateToken() }
        timer.resume()
        rotation = timer
        watchAppState()
    }

    /// The restore identifier option, where the app may use it: CoreBluetooth ends an app that
    /// asks for restoration without the matching background mode in its Info.plist.
    private static func restoring(_ key: String, _ identifier: String, mode: String) -> [String: Any]? {
        #if os(iOS)
        let modes = Bundle.main.object(forInfoDictionaryKey: "UIBackgroundModes") as? [String] ?? []
        return modes.contains(mode) ? [key: identifier] : nil
        #else
        return nil
        #endif
    }

    /// Follows the app into and out of the background (iOS); on macOS an app is never hidden.
    private func watchAppState() {
        #if os(iOS)
        let center = NotificationCenter.default
        observers.append(center.addObserver(forName: UIApplication.didEnterBackgroundNotification, object: nil, queue: nil) {
            [weak self] _ in self?.queue.async { self?.setHidden(true) }
        })
        observers.append(center.addObserver(forName: UIApplication.willEnterForegroundNotification, object: nil, queue: nil) {
            [weak self] _ in self?.queue.async { self?.setHidden(false) }
        })
        DispatchQueue.main.async { [weak self] in
            let inBackground = UIApplication.shared.applicationState == .background
            self?.queue.async { self?.setHidden(inBackground) }
        }
        #endif
    }

    /// On `queue`. The rule changes with it, so the scan starts over: peers seen under the old
    /// rule and left to connect to us (which they no longer can, or no longer need to) are
    /// reported again and judged anew.
    private func setHidden(_ value: Bool) {
        guard !stopped, value != hidden else { return }
        hidden = value
        rescan?.cancel()
        rescan = nil
        if hidden {
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.schedule(deadline: .now() + Self.backgroundRescan, repeating: Self.backgroundRescan)
            timer.setEventHandler { [weak self] in self?.scan() }
            timer.resume()
            rescan = timer
        }
        scan()
    }

    /// Starts (or restarts) the scan for the Weft service. Duplicates in the foreground: each
    /// advertisement is reported, so a peer is judged again as the rule or its token changes
    /// and found again when it comes back. (iOS ignores the option in the background.)
    private func scan() {
        guard !stopped, central.state == .poweredOn else { return }
        central.stopScan()
        central.scanForPeripherals(
            withServices: [Self.service],
            options: [CBCentralManagerScanOptionAllowDuplicatesKey: !hidden]
        )
    }

    private static func freshToken() -> Data {
        var bytes = [UInt8](repeating: 0, count: 8)
        _ = SecRandomCopyBytes(kSecRandomDefault, bytes.count, &bytes)
        return Data(bytes)
    }

    /// A new token, advertised from now on (on `queue`).
    private func rotateToken() {
        guard !stopped else { return }
        token = Self.freshToken()
        guard peripheralManager.state == .poweredOn, characteristic != nil else { return }
        peripheralManager.stopAdvertising()
        advertise(peripheralManager)
    }

    private func advertise(_ peripheral: CBPeripheralManager) {
        // The service UUID and the current random token, nothing that names the person. (In the
        // background iOS drops the name and moves the UUID to the overflow area by itself.)
        peripheral.startAdvertising([
            CBAdvertisementDataServiceUUIDsKey: [Self.service],
            CBAdvertisementDataLocalNameKey: LinkTable.namePrefix + token.map { String(format: "%02x", $0) }.joined(),
        ])
    }

    /// Stops for good; make a new `WeftBleRadio` to start again.
    public func stop() {
        queue.async { [self] in
            stopped = true
            rotation?.cancel()
            rescan?.cancel()
            for observer in observers { NotificationCenter.default.removeObserver(observer) }
            observers.removeAll()
            central.stopScan()
            peripheralManager.stopAdvertising()
            peripheralManager.removeAllServices()
            for peripheral in peripherals.values { central.cancelPeripheralConnection(peripheral) }
            dropAll()
            // Weft's mesh over this radio stops too (it ran until the node shut down before).
            if let handle { try? node.detachRadio(radio: handle) }
            handle = nil
            background.end()
        }
    }

    /// Bluetooth went off (or the radio stopped): CoreBluetooth reports no disconnections then.
    private func dropAll() {
        for id in Array(peripherals.keys) + Array(centrals.keys) { down(id) }
        pendingNotify.removeAll()
    }

    // MARK: Weft → radio (called on Weft's threads)

    public func send(link: UInt64, fragment: Data) throws {
        switch links.enqueue(link, fragment) {
        case let .writeNow(endpoint, fragment):
            queue.async { [self] in write(link, endpoint, fragment) }
        case .queued:
            break
        case .full:
            // Dropped, not an error: an error would close the link; reconciliation repairs it.
            break
        case .noLink:
            throw RadioError.LinkGone
        }
    }

    public func disconnect(link: UInt64) throws {
        queue.async { [self] in
            guard let (endpoint, _) = links.endpoint(of: link) else { return }
            if let peripheral = peripherals[endpoint] {
                central.cancelPeripheralConnection(peripheral)
            } else {
                // A central cannot be disconnected from the peripheral side; it stops hearing us.
                down(endpoint)
            }
        }
    }

    // MARK: The radio's own work (on `queue`)

    /// Writes `fragment` and whatever is queued behind it that can go at once. A link that went
    /// down meanwhile (its endpoint may be on a new link now) is left alone.
    private func write(_ link: UInt64, _ endpoint: UUID, _ fragment: Data) {
        var next: Data? = fragment
        while let fragment = next {
            guard let (current, initiator) = links.endpoint(of: link), current == endpoint else { return }
            if initiator {
                guard let peripheral = peripherals[endpoint],
                      let data = peripheral.services?.first(where: { $0.uuid == Self.service })?
                          .characteristics?.first(where: { $0.uuid == Self.data })
                else { return down(endpoint) }
                peripheral.writeValue(fragment, for: data, type: .withResponse) // done: didWriteValueFor
                return
            }
            guard let central = centrals[endpoint], let characteristic else { return down(endpoint) }
            guard peripheralManager.updateValue(fragment, for: characteristic, onSubscribedCentrals: [central]) else {
                pendingNotify[link] = fragment // retried in peripheralManagerIsReady
                return
            }
            next = links.written(link)
        }
    }

    private func writeNext(_ link: UInt64, _ endpoint: UUID) {
        if let next = links.written(link) { write(link, endpoint, next) }
    }

    private func up(_ endpoint: UUID, initiator: Bool, mtu: Int) {
        guard let link = links.open(endpoint, initiator: initiator) else {
            // A second connection with a device we already have a link with: keep the first.
            if initiator, let peripheral = peripherals.removeValue(forKey: endpoint) {
                central.cancelPeripheralConnection(peripheral)
            }
            return
        }
        do {
            try handle?.linkUp(link: link, mtu: UInt32(clamping: mtu), initiator: initiator)
        } catch {
            // Weft has all the links it takes, or the node closed.
            links.close(endpoint)
            if let peripheral = peripherals.removeValue(forKey: endpoint) {
                central.cancelPeripheralConnection(peripheral)
            }
        }
    }

    private func down(_ endpoint: UUID) {
        if let link = links.close(endpoint) {
            pendingNotify.removeValue(forKey: link)
            handle?.linkDown(link: link)
        }
        peripherals.removeValue(forKey: endpoint)
        centrals.removeValue(forKey: endpoint)
    }

    private func arrived(_ endpoint: UUID, _ fragment: Data) {
        guard let link = links.link(of: endpoint) else { return }
        background.touch()
        handle?.frame(link: link, fragment: fragment)
    }

    private func advert(_ advertisement: [String: Any]) -> LinkTable.Advert {
        let serviceData = (advertisement[CBAdvertisementDataServiceDataKey] as? [CBUUID: Data])?[Self.service]
        return LinkTable.advert(serviceData: serviceData, localName: advertisement[CBAdvertisementDataLocalNameKey] as? String)
    }
}

// MARK: Central role: we connect to their peripheral.

extension WeftBleRadio: CBCentralManagerDelegate, CBPeripheralDelegate {
    public func centralManagerDidUpdateState(_ central: CBCentralManager) {
        if central.state == .poweredOn, !stopped {
            scan()
            // Restored peripherals that were still connecting or connected go on from here.
            for peripheral in peripherals.values where links.link(of: peripheral.identifier) == nil {
                if peripheral.state == .connected {
                    peripheral.discoverServices([Self.service])
                    giveUpUnlessLinked(peripheral)
                } else {
                    connect(peripheral)
                }
            }
        } else if central.state != .poweredOn {
            dropAll()
        }
    }

    /// iOS relaunched the app for a Bluetooth event (it had ended it in the background): the
    /// peripherals we had, before `centralManagerDidUpdateState`. Weft's links are gone with the
    /// old process; each connected peripheral becomes a new link once subscribed again.
    public func centralManager(_ central: CBCentralManager, willRestoreState dict: [String: Any]) {
        background.touch()
        for peripheral in dict[CBCentralManagerRestoredStatePeripheralsKey] as? [CBPeripheral] ?? [] {
            peripheral.delegate = self
            peripherals[peripheral.identifier] = peripheral
        }
    }

    public func centralManager(
        _ central: CBCentralManager,
        didDiscover peripheral: CBPeripheral,
        advertisementData: [String: Any],
        rssi RSSI: NSNumber
    ) {
        guard !stopped, LinkTable.shouldConnect(own: token, seen: advert(advertisementData), hidden: hidden) else { return }
        let pending = peripherals.keys.filter { links.link(of: $0) == nil }.count
        guard peripherals[peripheral.identifier] == nil, links.link(of: peripheral.identifier) == nil,
              links.count + pending < Self.maxLinks
        else { return }
        background.touch()
        peripherals[peripheral.identifier] = peripheral
        peripheral.delegate = self
        connect(peripheral)
    }

    /// Connects with a deadline: iOS never times a connection attempt out, and a pending one
    /// counts against `maxLinks`, so after a few peers walked away mid-connect the central role
    /// would stop connecting at all.
    private func connect(_ peripheral: CBPeripheral) {
        central.connect(peripheral, options: nil)
        giveUpUnlessLinked(peripheral)
    }

    /// Given up if not a link in time (the peer walked away, or a restored connection never
    /// came back); it is found again by a later scan.
    private func giveUpUnlessLinked(_ peripheral: CBPeripheral) {
        queue.asyncAfter(deadline: .now() + Self.setupTimeout) { [weak self] in
            guard let self, !self.stopped, self.peripherals[peripheral.identifier] === peripheral,
                  self.links.link(of: peripheral.identifier) == nil
            else { return }
            self.central.cancelPeripheralConnection(peripheral)
            self.peripherals.removeValue(forKey: peripheral.identifier)
        }
    }

    public func centralManager(_ central: CBCentralManager, didConnect peripheral: CBPeripheral) {
        background.touch()
        peripheral.discoverServices([Self.service])
    }

    public func centralManager(_ central: CBCentralManager, didFailToConnect peripheral: CBPeripheral, error: Error?) {
        down(peripheral.identifier)
    }

    public func centralManager(
        _ central: CBCentralManager,
        didDisconnectPeripheral peripheral: CBPeripheral,
        error: Error?
    ) {
        down(peripheral.identifier)
    }

    public func peripheral(_ peripheral: CBPeripheral, didDiscoverServices error: Error?) {
        guard let service = peripheral.services?.first(where: { $0.uuid == Self.service }) else {
            central.cancelPeripheralConnection(peripheral)
            return
        }
        // Every characteristic: the data one, and on a laptop the slot ones too.
        peripheral.discoverCharacteristics(nil, for: service)
    }

    public func peripheral(
        _ peripheral: CBPeripheral,
        didDiscoverCharacteristicsFor service: CBService,
        error: Error?
    ) {
        guard let data = service.characteristics?.first(where: { $0.uuid == Self.data }) else {
            central.cancelPeripheralConnection(peripheral)
            return
        }
        if let slots = service.characteristics?.first(where: { $0.uuid == Self.slots }) {
            // A laptop: ask which slot notifies us; `didUpdateValueFor` subscribes to it.
            peripheral.readValue(for: slots)
        } else {
            peripheral.setNotifyValue(true, for: data)
        }
    }

    public func peripheral(
        _ peripheral: CBPeripheral,
        didUpdateNotificationStateFor characteristic: CBCharacteristic,
        error: Error?
    ) {
        guard error == nil, characteristic.isNotifying else {
            central.cancelPeripheralConnection(peripheral)
            return
        }
        // The ATT MTU is the largest single write plus the 3-byte ATT header. (The limit for
        // writes with response is always 512, done as long writes, which a fragment must not be.)
        up(peripheral.identifier, initiator: true, mtu: peripheral.maximumWriteValueLength(for: .withoutResponse) + 3)
    }

    public func peripheral(_ peripheral: CBPeripheral, didUpdateValueFor characteristic: CBCharacteristic, error: Error?) {
        if characteristic.uuid == Self.slots {
            let index = error == nil ? characteristic.value?.first : nil
            let slot = index.flatMap { k in
                characteristic.service?.characteristics?.first(where: { $0.uuid == CBUUID(string: LinkTable.slotUUID(k)) })
            }
            guard let slot else {
                central.cancelPeripheralConnection(peripheral)
                return
            }
            peripheral.setNotifyValue(true, for: slot)
            return
        }
        // Only the characteristic we subscribed to: a laptop notifies each central on its own
        // slot, and BlueZ does not stop a central from subscribing to others' slots too.
        guard characteristic.isNotifying else { return }
        if error == nil, let value = characteristic.value { arrived(peripheral.identifier, value) }
    }

    public func peripheral(_ peripheral: CBPeripheral, didWriteValueFor characteristic: CBCharacteristic, error: Error?) {
        guard let link = links.link(of: peripheral.identifier) else { return }
        if error != nil {
            central.cancelPeripheralConnection(peripheral)
        } else {
            writeNext(link, peripheral.identifier)
        }
    }
}

// MARK: Peripheral role: they connect to us.

extension WeftBleRadio: CBPeripheralManagerDelegate {
    public func peripheralManagerDidUpdateState(_ peripheral: CBPeripheralManager) {
        guard peripheral.state == .poweredOn, !stopped else {
            if peripheral.state != .poweredOn { dropAll() }
            return
        }
        if let restored = characteristic {
            // Restored with the service in place: centrals still subscribed become links again.
            for central in restored.subscribedCentrals ?? [] where links.link(of: central.identifier) == nil {
                centrals[central.identifier] = central
                up(central.identifier, initiator: false, mtu: central.maximumUpdateValueLength + 3)
            }
            if !peripheral.isAdvertising { advertise(peripheral) }
            return
        }
        let data = CBMutableCharacteristic(
            type: Self.data,
            properties: [.write, .notify],
            value: nil,
            permissions: [.writeable]
        )
        let service = CBMutableService(type: Self.service, primary: true)
        service.characteristics = [data]
        characteristic = data
        peripheral.add(service)
    }

    /// iOS relaunched the app for a Bluetooth event: the service we had published is still in
    /// place (adding it again would publish it twice), and so is the advertisement.
    public func peripheralManager(_ peripheral: CBPeripheralManager, willRestoreState dict: [String: Any]) {
        background.touch()
        let services = dict[CBPeripheralManagerRestoredStateServicesKey] as? [CBMutableService] ?? []
        characteristic = services.first(where: { $0.uuid == Self.service })?
            .characteristics?.first(where: { $0.uuid == Self.data }) as? CBMutableCharacteristic
    }

    public func peripheralManager(_ peripheral: CBPeripheralManager, didAdd service: CBService, error: Error?) {
        guard error == nil else { return }
        advertise(peripheral)
    }

    public func peripheralManager(
        _ peripheral: CBPeripheralManager,
        central: CBCentral,
        didSubscribeTo characteristic: CBCharacteristic
    ) {
        background.touch()
        centrals[central.identifier] = central
        up(central.identifier, initiator: false, mtu: central.maximumUpdateValueLength + 3)
    }

    public func peripheralManager(
        _ peripheral: CBPeripheralManager,
        central: CBCentral,
        didUnsubscribeFrom characteristic: CBCharacteristic
    ) {
        down(central.identifier)
    }

    public func peripheralManager(_ peripheral: CBPeripheralManager, didReceiveWrite requests: [CBATTRequest]) {
        for request in requests where request.characteristic.uuid == Self.data {
            if let value = request.value { arrived(request.central.identifier, value) }
        }
        if let first = requests.first { peripheral.respond(to: first, withResult: .success) }
    }

    public func peripheralManagerIsReady(toUpdateSubscribers peripheral: CBPeripheralManager) {
        for (link, fragment) in pendingNotify {
            guard let (endpoint, _) = links.endpoint(of: link), let central = centrals[endpoint],
                  let characteristic
            else {
                pendingNotify.removeValue(forKey: link)
                continue
            }
            if peripheral.updateValue(fragment, for: characteristic, onSubscribedCentrals: [central]) {
                pendingNotify.removeValue(forKey: link)
                writeNext(link, endpoint)
            }
        }
    }
}

/// A background task (iOS) around the work that follows a Bluetooth wake: iOS gives an app it
/// woke for a Bluetooth event about ten seconds; a background task asks for more (about 30 s
/// nowadays) so that a transfer that began can finish. Each `touch` (a discovery, a
/// connection, a fragment) keeps it for `quiet` more seconds; it ends then, or when iOS says
/// the time is up. In the foreground it costs nothing (iOS does not count it).
final class BackgroundWork: @unchecked Sendable {
    private let quiet: TimeInterval = 10
    private let lock = NSLock()
    #if os(iOS)
    private var task: UIBackgroundTaskIdentifier = .invalid
    #endif
    private var generation = 0

    func touch() {
        #if os(iOS)
        lock.lock()
        generation += 1
        let mine = generation
        let needed = task == .invalid
        lock.unlock()
        if needed {
            // Documented as safe off the main thread.
            let id = UIApplication.shared.beginBackgroundTask(withName: "weft-ble") { [weak self] in self?.end() }
            lock.lock()
            if task == .invalid { task = id } else { UIApplication.shared.endBackgroundTask(id) }
            lock.unlock()
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + quiet) { [weak self] in
            guard let self else { return }
            self.lock.lock()
            let idle = self.generation == mine
            self.lock.unlock()
            if idle { self.end() }
        }
        #endif
    }

    func end() {
        #if os(iOS)
        lock.lock()
        let id = task
        task = .invalid
        lock.unlock()
        if id != .invalid { UIApplication.shared.endBackgroundTask(id) }
        #endif
    }
}

extension Data {
    /// Bytes from lowercase hex; nil when it is not hex.
    init?(hex: String) {
        var bytes = [UInt8]()
        var index = hex.startIndex
        while index < hex.endIndex {
            guard let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex),
                  let byte = UInt8(hex[index ..< next], radix: 16)
            else { return nil }
            bytes.append(byte)
            index = next
        }
        self.init(bytes)
    }
}
