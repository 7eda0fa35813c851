import Autograd
import CMPI

/// What gradients and dispatched rows travel as (`parallel.comm_dtype`, docs/design.md §11).
/// With `bf16` every node of the canonical gradient tree (each micro-batch's gradient and each
/// partial sum) and every row an ep group exchanges is rounded to bfloat16 in every layout —
/// one process included, where nothing travels — so the values sent are exact in half the
/// bytes and layouts still agree bit for bit. Sums are taken in float32.
package enum CommDType: String, Sendable, CaseIterable {
    case fp32, bf16

    /// Rounds values about to become a node of the tree or an exchanged row.
    package func round(_ p: UnsafeMutablePointer<Float>, count: Int) {
        if self == .bf16 { BFloat16.round(p, count: count) }
    }

    package func round(_ v: inout [Float]) {
        guard self == .bf16 else { return }
        v.withUnsafeMutableBufferPointer { b in
            if let base = b.baseAddress { BFloat16.round(base, count: b.count) }
        }
    }

    /// Bytes per value on the wire.
    package var bytes: Int { self == .bf16 ? 2 : 4 }
}

extension UInt16: MPIScalar { package static var mpiType: MPI_Datatype { deeptrain_mpi_uint16() } }
