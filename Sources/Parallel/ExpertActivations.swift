import Autograd

/// What the owner's experts compute for the rows it received, in the receive layout: the
/// gate and up projections, the activation A = silu(gate)·up, and the output rows. The backward
/// reads the first three; the weight-gradient tree may keep A.
struct ExpertActivations {
    let gate: Storage, up: Storage, activation: Storage
    let output: Storage

    init(rows: Int, width: Int, intermediate: Int) {
        gate = Storage(uninitialized: Swift.max(rows * intermediate, 1))
        up = Storage(uninitialized: Swift.max(rows * intermediate, 1))
        activation = Storage(uninitialized: Swift.max(rows * intermediate, 1))
        output = Storage(uninitialized: Swift.max(rows * width, 1))
    }
}
