import Foundation

/// Reverse-mode bookkeeping: every op whose inputs need gradients attaches a `Node` to its
/// output holding the inputs and a closure that maps the output's gradient to theirs.
final class Node {
    let inputs: [Tensor]
    let backward: (Tensor) -> [Tensor?]
    let op: String
    /// Creation order: backward runs nodes newest first (see `backward(seed:)`).
    let sequence: UInt64
    init(inputs: [Tensor], op: String, backward: @escaping (Tensor) -> [Tensor?]) {
        self.inputs = inputs
        self.op = op
        self.backward = backward
        sequence = Node.next()
    }

    nonisolated(unsafe) private static var counter: UInt64 = 0
    private static let lock = NSLock()
    static func next() -> UInt64 {
        lock.lock()
        defer { lock.unlock() }
        counter += 1
        return counter
    }
}

/// Whether ops record for backward, per thread (as in PyTorch): a no-grad scope on one thread
/// must not switch recording off for another (test runners run suites concurrently).
package enum GradMode {
    private static let key: pthread_key_t = {
        var k = pthread_key_t()
        pthread_key_create(&k, nil)
        return k
    }()

    /// The key's slot holds nil (the default: enabled) or a non-nil marker for disabled.
    package static var isEnabled: Bool {
        get { pthread_getspecific(key) == nil }
        set { pthread_setspecific(key, newValue ? nil : UnsafeRawPointer(bitPattern: 1)) }
    }
}

/// Runs `body` without recording: for evaluation, generation and optimizer updates.
@discardableResult
package func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    let saved = GradMode.isEnabled
    GradMode.isEnabled = false
    defer { GradMode.isEnabled = saved }
    return try body()
}

extension Tensor {
    /// Attaches `backward` to `out` when any input needs a gradient and recording is on.
    /// The closure returns one gradient per input (nil where that input needs none), each with
    /// that input's shape.
    @inline(__always)
    func record(_ out: Tensor, inputs: [Tensor], op: String = #function, _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        Tensor.record(out, inputs: inputs, op: op, backward)
    }

    /// `op` names the node for the profiler and error messages (the calling function's name).
    @inline(__always)
    package static func record(_ out: Tensor, inputs: [Tensor], op: String = #function, _ backward: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        guard GradMode.isEnabled, inputs.contains(where: { $0.requiresGrad }) else {
            if Profiler.isEnabled && Profiler.withoutGradients { Profiler.recordForward(op) }
            return out
        }
        if Profiler.isEnabled { Profiler.recordForward(op) }
        out.requiresGrad = true
        out.node = Node(inputs: inputs, op: op, backward: backward)
        return out
    }

    /// True for tensors created by the user (parameters, inputs) rather than by an op.
    package var isLeaf: Bool { node == nil }

    /// Back-propagates from this scalar: every leaf that requires a gradient gets d(self)/d(leaf)
    /// added to its `grad`. The graph is released as it is consumed, so activations are freed
    /// when backward returns.
    package func backward(observer: BackwardObserver? = nil) {
        guard count == 1 else { shapeFailure("backward", "needs a scalar, got shape \(shape)") }
        backward(seed: Tensor(repeating: 1, shape: shape), observer: observer)
    }

    /// `observer` hears of each leaf as soon as its gradient is complete (after the last node
    /// that reads it, not at the end) and gets a call between nodes: a data-parallel trainer
    /// starts reducing finished gradients while the rest of the backward runs.
    package func backward(seed: Tensor, observer: BackwardObserver? = nil) {
        guard seed.shape == shape else { shapeFailure("backward", "seed shape \(seed.shape) vs tensor \(shape)") }
        guard requiresGrad else { shapeFailure("backward", "tensor does not require grad (no parameter reaches it)") }

        // Every node reachable from here (iterative DFS: graphs of a few thousand nodes are
        // normal), run newest first. Reverse creation order is a topological order, and unlike
        // a DFS order it does not depend on where backward starts: a tensor with several
        // consumers sums their gradients in the same order whether the graph ends in the loss
        // or at a pipeline stage's boundary, so a split model gives the same bits.
        var order: [Tensor] = []
        var leaves: [Tensor] = []
        var visited = Set<ObjectIdentifier>()
        var stack: [Tensor] = [self]
        while let t = stack.popLast() {
            if !visited.insert(ObjectIdentifier(t)).inserted { continue }
            guard let node = t.node else { leaves.append(t); continue }
            order.append(t)
            for i in node.inputs where i.requiresGrad && !visited.contains(ObjectIdentifier(i)) { stack.append(i) }
        }
        order.sort { $0.node!.sequence < $1.node!.sequence }
        // Each leaf is complete once the oldest node reading it has run (nodes run newest
        // first): it is accumulated right then. Only the order of the leaves' accumulations
        // moves, each one's sum is the same, so the bits do not change.
        var lastReader: [ObjectIdentifier: Int] = [:]
        for (i, t) in order.enumerated() {
            for input in t.node!.inputs where input.isLeaf && input.requiresGrad { lastReader[ObjectIdentifier(input)] = lastReader[ObjectIdentifier(input)] ?? i }
        }
        var leavesAfter = [[Tensor]](repeating: [], count: order.count)
        var unread: [Tensor] = []
        for leaf in leaves {
            if let i = lastReader[ObjectIdentifier(leaf)] { leavesAfter[i].append(leaf) } else { unread.append(leaf) }
        }

        // Gradients in flight. `owned` marks buffers we allocated here, which may be added to in
        // place; a gradient a backward closure returned may alias another (add passes its
        // gradient through to both inputs), so the first accumulation into it copies.
        var grads: [ObjectIdentifier: (Tensor, Bool)] = [ObjectIdentifier(self): (seed, false)]
        func accumulate(_ leaf: Tensor) {
            guard let (g, _) = grads.removeValue(forKey: ObjectIdentifier(leaf)) else { return }
            leaf.accumulateGrad(g)
            observer?.leafGradientReady(leaf)
        }
        withNoGrad {
            for leaf in unread { accumulate(leaf) }   // backward from a leaf itself
            for (i, t) in order.enumerated().reversed() {
                defer {
                    for leaf in leavesAfter[i] { accumulate(leaf) }
                    observer?.betweenNodes()
                }
                guard let (g, _) = grads.removeValue(forKey: ObjectIdentifier(t)) else { continue }
                let node = t.node!
                t.node = nil  // release the graph as we go
                let started = Profiler.isEnabled ? Profiler.clock() : 0
                let inputGrads = node.backward(g)
                if Profiler.isEnabled { Profiler.recordBackward(node.op, Profiler.clock() - started) }
                for (input, ig) in zip(node.inputs, inputGrads) {
                    guard let ig, input.requiresGrad else { continue }
                    if ig.shape != input.shape {
                        shapeFailure("backward", "\(node.op) returned gradient \(ig.shape) for input \(input.shape)")
                    }
                    let key = ObjectIdentifier(input)
                    if let (existing, owned) = grads[key] {
                        if owned {
                            addInPlace(existing, ig)
                        } else {
                            grads[key] = (existing.plainAdd(ig), true)
                        }
                    } else {
                        grads[key] = (ig, false)
                    }
                }
            }
        }
    }

    /// Adds `g` into this leaf's `grad` (allocating it on first use); a preallocated `grad`
    /// (for example a view into one flat gradient buffer) is written in place.
    func accumulateGrad(_ g: Tensor) {
        if let existing = grad {
            addInPlace(existing, g)
        } else {
            grad = g.clone()
        }
    }

    /// Sets `grad` to zero in place (keeping any preallocated buffer), or leaves it nil.
    package func zeroGrad() {
        guard let g = grad else { return }
        g.fill(0)
    }
}

/// Hears from `backward` as it goes (see `backward(seed:observer:)`).
package protocol BackwardObserver: AnyObject {
    /// `leaf.grad` now holds all of this backward's contribution.
    func leafGradientReady(_ leaf: Tensor)
    /// Called after every node: a moment to let communication progress.
    func betweenNodes()
}
