import Foundation
import Network
import WeftFFI
#if os(iOS)
import BackgroundTasks
#endif

/// What iOS lets Weft do in the background besides Bluetooth: scheduled catch-up through
/// `BGTaskScheduler`, calling the node's `syncOnce`, and the network watch. Not compiled here
/// (no Xcode on the machines this was written on); written against the BackgroundTasks and
/// Network frameworks' documentation.
///
/// The app's Info.plist lists the two identifiers under `BGTaskSchedulerPermittedIdentifiers`
/// and has the `fetch` and `processing` background modes (with `bluetooth-central` and
/// `bluetooth-peripheral` for the mesh). In `application(_:didFinishLaunchingWithOptions:)`,
/// before it returns (iOS requires the registration then):
///
///     WeftBackground.register { try await sharedNode() }   // opens the node, or the open one
///     WeftBackground.schedule()
///
/// and again `WeftBackground.schedule()` when the app goes to the background.
public enum WeftBackground {
    public static let refreshIdentifier = "app.weft.sync.refresh"
    public static let processingIdentifier = "app.weft.sync.processing"
    /// `syncOnce` deadlines: an app refresh task has about 30 s in all; a processing task runs
    /// for minutes, while the phone charges and idles.
    static let refreshBudgetMs: UInt64 = 20_000
    static let processingBudgetMs: UInt64 = 120_000

    #if os(iOS)
    /// Registers both tasks; `node` gives the node to sync (the app's open one, or one opened
    /// for the task with the key from `DatabaseKeyStore`).
    public static func register(node: @escaping @Sendable () async throws -> WeftNode) {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: refreshIdentifier, using: nil) { task in
            schedule() // the next one, first: a task that is cut off must not end the chain
            run(task, budgetMs: refreshBudgetMs, node: node)
        }
        BGTaskScheduler.shared.register(forTaskWithIdentifier: processingIdentifier, using: nil) { task in
            run(task, budgetMs: processingBudgetMs, node: node)
        }
    }

    /// Asks for the next refresh (iOS decides when: from its model of when the app is used;
    /// typically a few times a day, never for an app the user swiped away) and a processing
    /// task for the next time the phone charges with a network.
    public static func schedule() {
        let refresh = BGAppRefreshTaskRequest(identifier: refreshIdentifier)
        refresh.earliestBeginDate = Date(timeIntervalSinceNow: 15 * 60)
        try? BGTaskScheduler.shared.submit(refresh)
        let processing = BGProcessingTaskRequest(identifier: processingIdentifier)
        processing.requiresNetworkConnectivity = true
        processing.requiresExternalPower = true
        try? BGTaskScheduler.shared.submit(processing)
    }

    private static func run(_ task: BGTask, budgetMs: UInt64, node: @escaping @Sendable () async throws -> WeftNode) {
        let work = Task {
            do {
                _ = try await node().syncOnce(deadlineMs: budgetMs)
                task.setTaskCompleted(success: true)
            } catch {
                task.setTaskCompleted(success: false)
            }
        }
        // iOS's time is up: stop waiting (syncOnce stops by its deadline anyway).
        task.expirationHandler = { work.cancel() }
    }
    #endif
}

/// Calls `changed` when the device's network path changes (Wi-Fi to cellular, a new network,
/// none), so that the node drops connections that died with the old interface and dials again
/// at once: `NetworkWatch { try? node.networkChanged() }`. The update `NWPathMonitor` makes at
/// start reports the path we already have and is not passed on.
public final class NetworkWatch: @unchecked Sendable {
    private let monitor = NWPathMonitor()
    private let queue = DispatchQueue(label: "app.weft.network")
    private var last: NWPath?

    public init(changed: @escaping @Sendable () -> Void) {
        monitor.pathUpdateHandler = { [weak self] path in
            guard let self else { return }
            let previous = self.last
            self.last = path
            guard let previous else { return }
            // The same interfaces and status is no change (updates also come for other reasons).
            if previous.status != path.status || previous.availableInterfaces.map(\.name) != path.availableInterfaces.map(\.name) {
                changed()
            }
        }
        monitor.start(queue: queue)
    }

    public func stop() {
        monitor.cancel()
    }
}
