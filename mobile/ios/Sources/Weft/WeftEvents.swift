import WeftFFI

extension WeftNode {
    /// The node's events as an `AsyncStream`: each call subscribes a listener of its own, and
    /// the subscription is cancelled when the stream ends (the consuming task is cancelled, or
    /// the stream is released).
    ///
    ///     for await event in try node.events() {
    ///         switch event {
    ///         case let .messageReceived(message, via): show(message, via)
    ///         case .lagged: reloadEverything()   // events were dropped before this one
    ///         default: break
    ///         }
    ///     }
    ///
    /// Buffering, as the Kotlin `Flow` does it: up to `bufferSize` events wait for a slow
    /// consumer; newer ones are dropped and counted, and the consumer gets one
    /// `.lagged(missed:)` before the next event that fits. Weft's own `.lagged` passes through
    /// (added to any count of ours). The listener never blocks Weft's listener thread, so a
    /// consumer that calls `shutdown()` from inside the loop cannot deadlock. The stream does
    /// not finish by itself at `shutdown()`: cancel the consuming task first.
    public func events(bufferSize: Int = 1024) throws -> AsyncStream<Event> {
        var captured: AsyncStream<Event>.Continuation!
        // The closure runs at once, inside the initialiser.
        let stream = AsyncStream(Event.self, bufferingPolicy: .bufferingOldest(max(1, bufferSize))) { captured = $0 }
        let continuation = captured!
        let subscription = try subscribe(listener: StreamListener(continuation))
        continuation.onTermination = { _ in subscription.cancel() }
        return stream
    }
}

/// Hands events to a stream's continuation, counting what found no room.
private final class StreamListener: EventListener, @unchecked Sendable {
    private let continuation: AsyncStream<Event>.Continuation
    /// Dropped since the last event that got through. Weft calls a listener on one thread, one
    /// event at a time, so this needs no lock (hence `@unchecked Sendable`).
    private var missed: UInt64 = 0

    init(_ continuation: AsyncStream<Event>.Continuation) {
        self.continuation = continuation
    }

    func onEvent(event: Event) throws {
        if case let .lagged(n) = event {
            missed += n
            _ = flushMissed()
            return
        }
        if !flushMissed() || !offer(event) { missed += 1 }
    }

    private func flushMissed() -> Bool {
        guard missed > 0 else { return true }
        guard offer(.lagged(missed: missed)) else { return false }
        missed = 0
        return true
    }

    private func offer(_ event: Event) -> Bool {
        if case .enqueued = continuation.yield(event) { return true }
        return false
    }
}
