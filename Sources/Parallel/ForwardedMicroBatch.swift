import Autograd

/// A micro-batch whose forward has finished on this stage, waiting in the 1F1B schedule for
/// its backward (at most pp − s of them on stage s).
struct ForwardedMicroBatch {
    /// Where the backward starts.
    enum Start {
        /// The last stage: the micro-batch's loss, already its share of the step's.
        case loss(Tensor)
        /// An earlier stage: the output sent to the next stage, whose gradient comes back from
        /// there, and the stage's balance losses (already scaled), which join the same backward.
        case output(Tensor, balance: Tensor)
    }

    let start: Start
    /// The leaf that holds the previous stage's activations (nil on the first stage): its
    /// gradient goes back there.
    let input: Tensor?
}
