import CoreBluetooth
import Foundation
import WeftFFI

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
public final class WeftBleRadio: NSObject, RadioDriver, @unchecked Sendable {
    public static let service = CBUUID(string: "7E1F0001-9A3C-4B7E-A7D2-5C0F3E8BD14A")
    public static let data = CBUUID(string: "7E1F0002-9A3C-4B7E-A7D2-5C0F3E8BD14A")
    private static let maxLinks = 7
    /// iOS cannot advertise service data, so the token rides in the local name.
    private static let namePrefix = "weft-"

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

    public init(node: WeftNode) throws {
        token = Self.freshToken()
        self.node = node
        super.init()
        handle = try node.attachRadio(driver: self)
        central = CBCentralManager(delegate: self, queue: queue)
        peripheralManager = CBPeripheralManager(delegate: self, queue: queue)
        let timer = DispatchSource.makeTimerSource(queue: queue)
        timer.schedule(deadline: .now() + Self.tokenLifetime, repeating: Self.tokenLifetime)
        timer.setEventHandler { [weak self] in self?.rotateToken() }
        timer.resume()
        rotation = timer
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
        // The service UUID and the current random token, nothing that names the person.
        peripheral.startAdvertising([
            CBAdvertisementDataServiceUUIDsKey: [Self.service],
            CBAdvertisementDataLocalNameKey: Self.namePrefix + token.map { String(format: "%02x", $0) }.joined(),
        ])
    }

    /// Stops for good; make a new `WeftBleRadio` to start again.
    public func stop() {
        queue.async { [self] in
            stopped = true
            rotation?.cancel()
            central.stopScan()
            peripheralManager.stopAdvertising()
            peripheralManager.removeAllServices()
            for peripheral in peripherals.values { central.cancelPeripheralConnection(peripheral) }
            dropAll()
            // Weft's mesh over this radio stops too (it ran until the node shut down before).
            if let handle { try? node.detachRadio(radio: handle) }
            handle = nil
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
        handle?.frame(link: link, fragment: fragment)
    }

    private func theirToken(_ advertisement: [String: Any]) -> Data? {
        if let serviceData = advertisement[CBAdvertisementDataServiceDataKey] as? [CBUUID: Data],
           let token = serviceData[Self.service]
        {
            return token // an Android phone
        }
        if let name = advertisement[CBAdvertisementDataLocalNameKey] as? String, name.hasPrefix(Self.namePrefix) {
            return Data(hex: String(name.dropFirst(Self.namePrefix.count)))
        }
        return nil
    }
}

// MARK: Central role: we connect to their peripheral.

extension WeftBleRadio: CBCentralManagerDelegate, CBPeripheralDelegate {
    public func centralManagerDidUpdateState(_ central: CBCentralManager) {
        if central.state == .poweredOn, !stopped {
            central.scanForPeripherals(withServices: [Self.service], options: nil)
        } else if central.state != .poweredOn {
            dropAll()
        }
    }

    public func centralManager(
        _ central: CBCentralManager,
        didDiscover peripheral: CBPeripheral,
        advertisementData: [String: Any],
        rssi RSSI: NSNumber
    ) {
        guard !stopped, LinkTable.shouldConnect(own: token, theirs: theirToken(advertisementData)) else { return }
        let pending = peripherals.keys.filter { links.link(of: $0) == nil }.count
        guard peripherals[peripheral.identifier] == nil, links.link(of: peripheral.identifier) == nil,
              links.count + pending < Self.maxLinks
        else { return }
        peripherals[peripheral.identifier] = peripheral
        peripheral.delegate = self
        central.connect(peripheral, options: nil)
    }

    public func centralManager(_ central: CBCentralManager, didConnect peripheral: CBPeripheral) {
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
        peripheral.discoverCharacteristics([Self.data], for: service)
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
        peripheral.setNotifyValue(true, for: data)
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

    public func peripheralManager(_ peripheral: CBPeripheralManager, didAdd service: CBService, error: Error?) {
        guard error == nil else { return }
        advertise(peripheral)
    }

    public func peripheralManager(
        _ peripheral: CBPeripheralManager,
        central: CBCentral,
        didSubscribeTo characteristic: CBCharacteristic
    ) {
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
