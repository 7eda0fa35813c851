import Foundation
import CMPI
import Collectives
import BLASKernel

/// `deeptrain bench comm` (under mpirun): the communicator's allreduce and all-to-all against
/// the same raw MPI calls, and the deterministic reduce-scatter + allgather the optimizer uses
/// against raw MPI_Reduce_scatter_block + MPI_Allgather of the same bytes, and the optimizer's
/// allgather of values (tensor to tensor) against raw MPI_Allgather, at given sizes. Bandwidths
/// are algorithmic (bytes of the vector per second) plus the bus
/// bandwidth convention of nccl-tests (allreduce × 2(p−1)/p, all-to-all × (p−1)/p), so figures
/// at different rank counts compare.
package enum CommBenchmark {
    package struct Result: Codable, Sendable {
        package let operation: String
        package let floats: Int
        package let ms: Double
        package let rawMs: Double
        package let gbPerSecond: Double
        package let rawGBPerSecond: Double
        package let busGBPerSecond: Double
        /// ours / raw bandwidth.
        package let ratio: Double
        /// The result had the expected values.
        package let correct: Bool

        enum CodingKeys: String, CodingKey {
            case operation
            case floats
            case ms
            case rawMs = "raw_ms"
            case gbPerSecond = "gb_per_s"
            case rawGBPerSecond = "raw_gb_per_s"
            case busGBPerSecond = "bus_gb_per_s"
            case ratio
            case correct
        }
    }
    package struct Report: Codable, Sendable {
        package var benchmark = "comm"
        package var blasKernel = dt_kernel_state_read().kernelName
        package let ranks: Int
        package let mpi: String
        package let repeats: Int
        package let results: [Result]

        enum CodingKeys: String, CodingKey {
            case benchmark
            case blasKernel = "blas_kernel"
            case ranks
            case mpi
            case repeats
            case results
        }
    }

    /// Runs on every rank; returns the report on rank 0 (nil elsewhere).
    package static func run(world: Communicator, sizes: [Int], repeats: Int) throws -> Report? {
        let p = world.size
        var results: [Result] = []
        // Ours and raw alternate, repeat by repeat, so both see the same noise of a shared machine;
        // each repeat counts at its slowest rank; the fastest repeat is reported (the machine's
        // noise only ever adds time).
        func timed(_ ours: () throws -> Void, _ raw: () throws -> Void) throws -> (Double, Double) {
            var a: [Double] = [], b: [Double] = []
            try ours()
            try raw()  // warm-up
            for i in 0..<repeats {
                // Alternate which goes first: the second of a pair finds warmer caches.
                for first in [i % 2 == 0, i % 2 != 0] {
                    try world.barrier()
                    let t0 = Date()
                    if first { try ours() } else { try raw() }
                    let t = Date().timeIntervalSince(t0)
                    if first { a.append(t) } else { b.append(t) }
                }
            }
            try world.allreduceMax(&a)
            try world.allreduceMax(&b)
            return (a.min()!, b.min()!)
        }
        for n in sizes {
            let bytes = Double(n * 4)
            // Allreduce: every rank holds rank+1 everywhere; the sum is p(p+1)/2.
            var x = [Float](repeating: Float(world.rank + 1), count: n)
            try world.allreduceSum(&x)
            let ok = x.allSatisfy { $0 == Float(p * (p + 1) / 2) }
            // Timed on small values so that repeated sums stay finite.
            for i in 0..<n { x[i] = 1e-6 }
            var y = [Float](repeating: 1e-6, count: n)
            let (ours, raw) = try timed({ try world.allreduceSum(&x) }, {
                if let comm = world.comm {
                    _ = y.withUnsafeMutableBufferPointer { b in
                        MPI_Allreduce(deeptrain_mpi_in_place(), b.baseAddress, Int32(n), deeptrain_mpi_float(), deeptrain_mpi_sum(), comm)
                    }
                }
            })
            results.append(result("allreduce", n, ours, raw, bytes, bus: 2 * Double(p - 1) / Double(p), ok))

            // The optimizer's path: canonical reduce-scatter, then allgather of the shards.
            let per = n / p
            let shards = (0..<p).map { ($0 * per)..<($0 == p - 1 ? n : ($0 + 1) * per) }
            var z = [Float](repeating: Float(world.rank + 1), count: n)
            let mine = try world.reduceScatterCanonical(z, shards: shards)
            for (i, v) in zip(shards[world.rank], mine) { z[i] = v }
            try world.allgatherShards(&z, shards: shards)
            let zok = z.allSatisfy { $0 == Float(p * (p + 1) / 2) }
            // Against the raw pair the same bytes take without fixed order: MPI_Reduce_scatter_block
            // into the rank's block, then MPI_Allgather in place (equal blocks: n divisible by p).
            // Both sides copy their shard back into the vector; values grow by p per call, finite
            // over the repeats.
            var w = [Float](repeating: 1e-6, count: n), block = [Float](repeating: 0, count: per)
            let me = shards[world.rank]
            let (rs, rsRaw) = try timed({
                let mine = try world.reduceScatterCanonical(z, shards: shards)
                z.withUnsafeMutableBufferPointer { zb in mine.withUnsafeBufferPointer { (zb.baseAddress! + me.lowerBound).update(from: $0.baseAddress!, count: me.count) } }
                try world.allgatherShards(&z, shards: shards)
            }, {
                if let comm = world.comm, n % p == 0 {
                    w.withUnsafeMutableBufferPointer { wb in
                        block.withUnsafeMutableBufferPointer { bb in
                            _ = MPI_Reduce_scatter_block(wb.baseAddress, bb.baseAddress, Int32(per), deeptrain_mpi_float(), deeptrain_mpi_sum(), comm)
                            (wb.baseAddress! + me.lowerBound).update(from: bb.baseAddress!, count: per)
                            _ = MPI_Allgather(deeptrain_mpi_in_place(), 0, deeptrain_mpi_float(), wb.baseAddress, Int32(per), deeptrain_mpi_float(), comm)
                        }
                    }
                }
            })
            results.append(result("reduce_scatter+allgather (canonical)", n, rs, n % p == 0 ? rsRaw : raw, bytes, bus: 2 * Double(p - 1) / Double(p), zok))

            // The optimizer's allgather of values (`FlatVector.allgatherValues`): every rank's
            // shard in runs of 64K floats (a routed expert's weight in `small`), each run sent
            // to the other ranks and received in place (`Communicator.allgather(runs:)`), against raw
            // MPI_Allgather in place of the same bytes. Rank q's shard holds q + 1 beforehand.
            var u = [Float](repeating: 0, count: n), uRaw = [Float](repeating: 0, count: n)
            for i in me { u[i] = Float(world.rank + 1) }
            let run = 65_536
            let (ag, agRaw) = try timed({
                try u.withUnsafeMutableBufferPointer { ub in
                    let base = ub.baseAddress!
                    try world.allgather(runs: shards.map { shard in
                        stride(from: shard.lowerBound, to: shard.upperBound, by: run).map { (base + $0, Swift.min(run, shard.upperBound - $0)) }
                    })
                }
            }, {
                if let comm = world.comm, n % p == 0 {
                    _ = uRaw.withUnsafeMutableBufferPointer { b in
                        MPI_Allgather(deeptrain_mpi_in_place(), 0, deeptrain_mpi_float(), b.baseAddress, Int32(per), deeptrain_mpi_float(), comm)
                    }
                }
            })
            let uok = (0..<p).allSatisfy { q in shards[q].allSatisfy { u[$0] == Float(q + 1) } }
            results.append(result("allgather (tensor to tensor)", n, ag, n % p == 0 ? agRaw : raw, bytes, bus: Double(p - 1) / Double(p), uok))

            // All-to-all: n floats per rank, n/p to each peer; block q holds q + 1000·rank.
            var send = [Float](repeating: 0, count: per * p)
            for q in 0..<p { for i in 0..<per { send[q * per + i] = Float(q + 1000 * world.rank) } }
            var recv = [Float](repeating: 0, count: per * p)
            let counts = [Int](repeating: per, count: p), displs = (0..<p).map { $0 * per }
            var recvRaw = [Float](repeating: 0, count: per * p)
            let (a2a, a2aRaw) = try timed({
                try send.withUnsafeBufferPointer { s in
                    try recv.withUnsafeMutableBufferPointer { r in
                        try world.alltoallv(s.baseAddress!, sendCounts: counts, sendDispls: displs, r.baseAddress!, recvCounts: counts, recvDispls: displs, agreed: true)
                    }
                }
            }, {
                if let comm = world.comm {
                    _ = send.withUnsafeBufferPointer { s in
                        recvRaw.withUnsafeMutableBufferPointer { r in
                            MPI_Alltoall(s.baseAddress, Int32(per), deeptrain_mpi_float(), r.baseAddress, Int32(per), deeptrain_mpi_float(), comm)
                        }
                    }
                }
            })
            var aok = true
            for q in 0..<p { for i in 0..<per where recv[q * per + i] != Float(world.rank + 1000 * q) { aok = false } }
            results.append(result("alltoall", per * p, a2a, a2aRaw, Double(per * p * 4), bus: Double(p - 1) / Double(p), aok))
        }
        // Correct only if correct on every rank.
        var bad = results.map { $0.correct ? 0.0 : 1.0 }
        try world.allreduceMax(&bad)
        let checked = zip(results, bad).map { r, b in
            Result(operation: r.operation, floats: r.floats, ms: r.ms, rawMs: r.rawMs, gbPerSecond: r.gbPerSecond, rawGBPerSecond: r.rawGBPerSecond,
                   busGBPerSecond: r.busGBPerSecond, ratio: r.ratio, correct: b == 0)
        }
        guard world.rank == 0 else { return nil }
        return Report(ranks: p, mpi: Communicator.libraryVersion, repeats: repeats, results: checked)
    }

    static func result(_ op: String, _ n: Int, _ t: Double, _ raw: Double, _ bytes: Double, bus: Double, _ ok: Bool) -> Result {
        let gb = bytes / t / 1e9, rgb = bytes / raw / 1e9
        return Result(operation: op, floats: n, ms: t * 1e3, rawMs: raw * 1e3, gbPerSecond: gb, rawGBPerSecond: rgb,
                      busGBPerSecond: gb * bus, ratio: gb / rgb, correct: ok)
    }
}

extension dt_kernel_state {
    /// The BLAS kernel in use (this module sits left of Autograd's KernelSelection).
    var kernelName: String { withUnsafeBytes(of: kernel) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
}
