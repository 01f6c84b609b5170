import Foundation

/// The Bluetooth driver's bookkeeping, the same as Android's `LinkTable.kt`: which link id each
/// remote end has, and each link's ordered queue of fragments with one write in flight, because
/// Weft's fragments must arrive in order and CoreBluetooth takes writes one at a time.
///
/// Endpoints are CoreBluetooth identifiers (a peripheral's or a central's `identifier`).
/// Thread-safe: Weft calls `enqueue` on its threads while CoreBluetooth's callbacks call the rest.
final class LinkTable: @unchecked Sendable {
    enum Enqueued {
        /// Nothing was in flight: write this now and call `written` when the write completes.
        case writeNow(UUID, Data)
        /// Behind a write in flight; `written` hands it out in turn.
        case queued
        /// The queue is full: this fragment is dropped (the mesh's reconciliation repairs it).
        case full
        /// No such link (it went down).
        case noLink
    }

    private struct Link {
        let endpoint: UUID
        let initiator: Bool
        var queue: [Data] = []
        var inFlight = false
    }

    private let lock = NSLock()
    private let maxQueued: Int
    private var byEndpoint: [UUID: UInt64] = [:]
    private var links: [UInt64: Link] = [:]
    private var nextId: UInt64 = 1

    /// `maxQueued`: one largest envelope at the smallest MTU.
    init(maxQueued: Int = 2048) {
        self.maxQueued = maxQueued
    }

    /// Gives `endpoint` a new link id, or nil when it already has a link.
    func open(_ endpoint: UUID, initiator: Bool) -> UInt64? {
        lock.lock(); defer { lock.unlock() }
        if byEndpoint[endpoint] != nil { return nil }
        let id = nextId
        nextId += 1
        byEndpoint[endpoint] = id
        links[id] = Link(endpoint: endpoint, initiator: initiator)
        return id
    }

    func link(of endpoint: UUID) -> UInt64? {
        lock.lock(); defer { lock.unlock() }
        return byEndpoint[endpoint]
    }

    func endpoint(of link: UInt64) -> (UUID, Bool)? {
        lock.lock(); defer { lock.unlock() }
        return links[link].map { ($0.endpoint, $0.initiator) }
    }

    var count: Int {
        lock.lock(); defer { lock.unlock() }
        return links.count
    }

    /// Forgets `endpoint`'s link and what was queued on it; returns the link id it had.
    @discardableResult
    func close(_ endpoint: UUID) -> UInt64? {
        lock.lock(); defer { lock.unlock() }
        guard let id = byEndpoint.removeValue(forKey: endpoint) else { return nil }
        links.removeValue(forKey: id)
        return id
    }

    func enqueue(_ link: UInt64, _ fragment: Data) -> Enqueued {
        lock.lock(); defer { lock.unlock() }
        guard var state = links[link] else { return .noLink }
        if !state.inFlight {
            state.inFlight = true
            links[link] = state
            return .writeNow(state.endpoint, fragment)
        }
        if state.queue.count >= maxQueued { return .full }
        state.queue.append(fragment)
        links[link] = state
        return .queued
    }

    /// The write in flight on `link` finished; returns the next fragment to write, if any.
    func written(_ link: UInt64) -> Data? {
        lock.lock(); defer { lock.unlock() }
        guard var state = links[link] else { return nil }
        let next = state.queue.isEmpty ? nil : state.queue.removeFirst()
        state.inFlight = next != nil
        links[link] = state
        return next
    }

    /// What a scan saw of a Weft peer (see `LinkTable.kt`, `LinkTable.Advert`): an Android
    /// phone's token (service data), a foreground iPhone's token (local name), or none (an
    /// iPhone in the background, whose advertisement sits in Apple's overflow area without a
    /// name; only iOS scanners see it at all).
    enum Advert: Equatable {
        case android(Data)
        case iphone(Data)
        case tokenless
    }

    /// Notify slot `k`'s characteristic on a laptop's server (core/src/mesh/radio/ble/mod.rs,
    /// `slot`); the same in `LinkTable.kt`.
    static func slotUUID(_ k: UInt8) -> String {
        String(format: "7E1F01%02X-9A3C-4B7E-A7D2-5C0F3E8BD14A", k)
    }

    /// iOS cannot advertise service data, so the token rides in the local name.
    static let namePrefix = "weft-"

    static func advert(serviceData: Data?, localName: String?) -> Advert {
        if let serviceData, !serviceData.isEmpty { return .android(serviceData) }
        guard let localName, localName.hasPrefix(namePrefix) else { return .tokenless }
        let hex = String(localName.dropFirst(namePrefix.count))
        guard hex.count == 16, let token = Data(hex: hex) else { return .tokenless }
        return .iphone(token)
    }

    /// Whether we open the link to the peer that advertised `seen`; the same rule as
    /// `LinkTable.shouldConnect` in Kotlin. `hidden`: our app is in the background, so Android
    /// cannot see us and another iPhone sees us without a token. A hidden iPhone connects to
    /// every Android phone and every tokenless peer, and leaves a foreground iPhone to connect
    /// to it (which it does: a tokenless advertisement is always connected to). Everyone else
    /// compares tokens; the lower one connects.
    static func shouldConnect(own: Data, seen: Advert, hidden: Bool) -> Bool {
        switch seen {
        case .tokenless: return true
        case let .android(theirs): return hidden || lower(own, theirs)
        case let .iphone(theirs): return !hidden && lower(own, theirs)
        }
    }

    private static func lower(_ ours: Data, _ theirs: Data) -> Bool {
        for (a, b) in zip(ours, theirs) where a != b {
            return a < b
        }
        return ours.count < theirs.count
    }
}
