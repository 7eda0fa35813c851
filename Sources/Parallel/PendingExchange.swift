/// An exchange between the ranks of an ep group that has been started; `wait()` gives what
/// arrived. Callers start an exchange as soon as its rows are ready and wait only where they
/// need the result, so that a non-blocking all-to-all can take the place of the blocking one
/// (keeping its request here) without moving any caller. Today the exchange has completed when
/// it is started, and `wait` returns at once.
struct PendingExchange<Value> {
    private let value: Value

    init(completed value: Value) { self.value = value }

    func wait() throws -> Value { value }
}
