/// An exchange between the ranks of an ep group that has been started; `wait()` gives what
/// arrived. Callers start an exchange as soon as its rows are ready and wait only where they
/// need the result, doing other work in between (the dispatch runs behind the shared experts).
/// Wait once: a posted exchange's requests complete in the first `wait`.
struct PendingExchange<Value> {
    private let finish: () throws -> Value

    init(completed value: Value) { finish = { value } }

    init(finishing finish: @escaping () throws -> Value) { self.finish = finish }

    func wait() throws -> Value { try finish() }
}
