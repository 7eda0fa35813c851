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
        let timer = PairTimer(world: world, repeats: repeats)
        var results: [Result] = []
        for n in sizes {
            let allreduce = try measureAllreduce(n, timer)
            // Without equal blocks there is no raw counterpart: those compare with the allreduce.
            results += [allreduce.result, try measureReduceScatterAllgather(n, timer, fallbackRaw: allreduce.raw),
                        try measureAllgatherValues(n, timer, fallbackRaw: allreduce.raw), try measureAlltoall(n, timer)]
        }
        // Correct only if correct on every rank.
        var bad = results.map { $0.correct ? 0.0 : 1.0 }
        try world.allreduceMax(&bad)
        let checked = zip(results, bad).map { r, b in
            Result(operation: r.operation, floats: r.floats, ms: r.ms, rawMs: r.rawMs, gbPerSecond: r.gbPerSecond, rawGBPerSecond: r.rawGBPerSecond,
                   busGBPerSecond: r.busGBPerSecond, ratio: r.ratio, correct: b == 0)
        }
        guard world.rank == 0 else { return nil }
        return Report(ranks: world.size, mpi: Communicator.libraryVersion, repeats: repeats, results: checked)
    }

    /// Times ours against raw MPI. They alternate, repeat by repeat, so both see the same noise
    /// of a shared machine; each repeat counts at its slowest rank; the fastest repeat is
    /// reported (the machine's noise only ever adds time).
    struct PairTimer {
        let world: Communicator
        let repeats: Int

        func time(_ ours: () throws -> Void, _ raw: () throws -> Void) throws -> (ours: Double, raw: Double) {
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
    }

    /// Rank q's shard of an n-float vector (the last takes the remainder).
    static func shards(_ n: Int, ranks p: Int) -> [Range<Int>] {
        let per = n / p
        return (0..<p).map { ($0 * per)..<($0 == p - 1 ? n : ($0 + 1) * per) }
    }

    /// Allreduce: every rank holds rank+1 everywhere; the sum is p(p+1)/2.
    static func measureAllreduce(_ n: Int, _ timer: PairTimer) throws -> (result: Result, raw: Double) {
        let world = timer.world, p = world.size
        var x = [Float](repeating: Float(world.rank + 1), count: n)
        try world.allreduceSum(&x)
        let ok = x.allSatisfy { $0 == Float(p * (p + 1) / 2) }
        // Timed on small values so that repeated sums stay finite.
        for i in 0..<n { x[i] = 1e-6 }
        var y = [Float](repeating: 1e-6, count: n)
        let (ours, raw) = try timer.time({ try world.allreduceSum(&x) }, {
            if let comm = world.comm {
                _ = y.withUnsafeMutableBufferPointer { b in
                    MPI_Allreduce(deeptrain_mpi_in_place(), b.baseAddress, Int32(n), deeptrain_mpi_float(), deeptrain_mpi_sum(), comm)
                }
            }
        })
        return (result("allreduce", n, ours, raw, Double(n * 4), bus: 2 * Double(p - 1) / Double(p), ok), raw)
    }

    /// The optimizer's path: canonical reduce-scatter, then allgather of the shards, against
    /// the raw pair the same bytes take without fixed order: MPI_Reduce_scatter_block into the
    /// rank's block, then MPI_Allgather in place (equal blocks: n divisible by p). Both sides
    /// copy their shard back into the vector; values grow by p per call, finite over the repeats.
    static func measureReduceScatterAllgather(_ n: Int, _ timer: PairTimer, fallbackRaw: Double) throws -> Result {
        let world = timer.world, p = world.size, per = n / p
        let shards = shards(n, ranks: p), me = shards[world.rank]
        var z = [Float](repeating: Float(world.rank + 1), count: n)
        let mine = try world.reduceScatterCanonical(z, shards: shards)
        for (i, v) in zip(me, mine) { z[i] = v }
        try world.allgatherShards(&z, shards: shards)
        let ok = z.allSatisfy { $0 == Float(p * (p + 1) / 2) }
        var w = [Float](repeating: 1e-6, count: n), block = [Float](repeating: 0, count: per)
        let (ours, raw) = try timer.time({
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
        return result("reduce_scatter+allgather (canonical)", n, ours, n % p == 0 ? raw : fallbackRaw, Double(n * 4), bus: 2 * Double(p - 1) / Double(p), ok)
    }

    /// The optimizer's allgather of values (`FlatVector.allgatherValues`): every rank's shard in
    /// runs of 64K floats (a routed expert's weight in `small`), each run sent to the other
    /// ranks and received in place (`Communicator.allgather(runs:)`), against raw MPI_Allgather
    /// in place of the same bytes. Rank q's shard holds q + 1 beforehand.
    static func measureAllgatherValues(_ n: Int, _ timer: PairTimer, fallbackRaw: Double) throws -> Result {
        let world = timer.world, p = world.size, per = n / p
        let shards = shards(n, ranks: p)
        var u = [Float](repeating: 0, count: n), uRaw = [Float](repeating: 0, count: n)
        for i in shards[world.rank] { u[i] = Float(world.rank + 1) }
        let run = 65_536
        let (ours, raw) = try timer.time({
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
        let ok = (0..<p).allSatisfy { q in shards[q].allSatisfy { u[$0] == Float(q + 1) } }
        return result("allgather (tensor to tensor)", n, ours, n % p == 0 ? raw : fallbackRaw, Double(n * 4), bus: Double(p - 1) / Double(p), ok)
    }

    /// All-to-all: n floats per rank, n/p to each peer; block q holds q + 1000·rank.
    static func measureAlltoall(_ n: Int, _ timer: PairTimer) throws -> Result {
        let world = timer.world, p = world.size, per = n / p
        var send = [Float](repeating: 0, count: per * p)
        for q in 0..<p { for i in 0..<per { send[q * per + i] = Float(q + 1000 * world.rank) } }
        var recv = [Float](repeating: 0, count: per * p), recvRaw = [Float](repeating: 0, count: per * p)
        let counts = [Int](repeating: per, count: p), displs = (0..<p).map { $0 * per }
        let (ours, raw) = try timer.time({
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
        var ok = true
        for q in 0..<p { for i in 0..<per where recv[q * per + i] != Float(world.rank + 1000 * q) { ok = false } }
        return result("alltoall", per * p, ours, raw, Double(per * p * 4), bus: Double(p - 1) / Double(p), ok)
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
